"""Database benchmark: the database service's instances against the same PostgreSQL started by hand.

Prints one ``name value`` line per figure (issue 14's targets in brackets):

    instance_active_s        median seconds from create_instance() to the server accepting connections  [<= 10]
    insert_rps_ratio         single-row inserts per second into a lab instance / into the same PostgreSQL
                             started by hand with the same settings on the same disk                    [>= 0.9]
    backup_restore_equal     1 when an instance restored from a backup holds exactly the backed-up rows  [1]

and, for reference: ``instance_active_volume_s`` (the same with a 1 GiB volume: mkfs and the FUSE
export added), ``insert_rps_lab``, ``insert_rps_by_hand``, and ``insert_rps_ratio_volume`` (the lab
instance with its data on a block storage volume, over the same peer: what the volume's path costs,
qcow2 behind FUSE behind a loop device).

Inserts are autocommit ``INSERT``s of one row each over the Unix socket (every one a
transaction that waits for its WAL to reach the disk), so the figure is the data path:
client, server, filesystem, disk.  The peer is an ``initdb`` + ``postgres`` of the same
version with the instance's own ``postgresql.conf`` (only its listening address and
socket folder changed), its data in the same folder of the same filesystem, outside any
namespace or cgroup.  Rounds alternate between the two so a noisy neighbour slows both
alike.  Run with ``make bench`` or ``python bench/database.py``.
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("CLOUDLAB_NETNS", "cloudlab-bench")

import psycopg  # noqa: E402

import cloudlab as cl  # noqa: E402
from cloudlab.database import datastore  # noqa: E402
from cloudlab.host import ownership  # noqa: E402
from cloudlab.process import stop_process  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
INSERTS = int(os.environ.get("BENCH_INSERTS", "1500"))
CREATES = int(os.environ.get("BENCH_CREATES", "3"))
PASSWORD = "bench-secret"


def figure(name, value):
    """Print one figure as ``name value``."""
    print(f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}", flush=True)


def inserts_per_s(conninfo):
    """Single-row autocommit inserts per second into a fresh table."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench")
        conn.execute("CREATE TABLE bench (id int PRIMARY KEY, payload text)")
        start = time.perf_counter()
        for i in range(INSERTS):
            conn.execute("INSERT INTO bench VALUES (%s, %s)", (i, "x" * 64))
        return INSERTS / (time.perf_counter() - start)


class ByHand:
    """The same PostgreSQL, started by hand: initdb, the instance's settings, postgres as the postgres user."""

    def __init__(self, folder, version, config):
        self.folder = Path(folder)
        self.version = version
        self.config = config
        self.proc = None

    def start(self):
        as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        bin_dir = datastore.bin_dir(self.version)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        shutil.chown(self.folder, "postgres", "postgres")
        pwfile = self.folder / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run(as_postgres + [str(bin_dir / "initdb"), "-D", str(self.folder / "pgdata"), "-U", "bench",
                                      f"--pwfile={pwfile}", "-A", "scram-sha-256", "-E", "UTF8",
                                      "--locale=C.UTF-8"], check=True, capture_output=True)
        # the instance's settings, with only where it listens and where its files are changed
        text = re.sub(r"^listen_addresses = .*$", "listen_addresses = ''", self.config, flags=re.M)
        text = re.sub(r"^unix_socket_directories = .*$", f"unix_socket_directories = '{self.folder}'", text, flags=re.M)
        text = re.sub(r"^hba_file = .*$", f"hba_file = '{self.folder}/pg_hba.conf'", text, flags=re.M)
        (self.folder / "postgresql.conf").write_text(text)
        (self.folder / "pg_hba.conf").write_text(datastore.HBA)
        log = open(self.folder / "postgres.log", "wb")
        self.proc = subprocess.Popen(as_postgres + [str(bin_dir / "postgres"), "-D", str(self.folder / "pgdata"),
                                                    "-c", f"config_file={self.folder}/postgresql.conf"],
                                     stdout=log, stderr=log, env=ownership.child_env())
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.conninfo, connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise cl.CloudlabError("the PostgreSQL started by hand did not answer: "
                                           + (self.folder / "postgres.log").read_text()[-500:]) from None
                time.sleep(0.05)

    @property
    def conninfo(self):
        return f"host={self.folder} port=5432 user=bench password={PASSWORD} dbname=postgres"

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(2)        # SIGINT: fast shutdown
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                stop_process(self.proc)
        shutil.rmtree(self.folder, ignore_errors=True)


def main():
    lab = cl.Lab(name="benchdb")
    db = lab.database
    peer = None
    try:
        # create -> accepting connections (create_instance returns when the server answers)
        times, volume_times = [], []
        for i in range(CREATES):
            for volume_size, into in ((None, times), (1, volume_times)):
                start = time.monotonic()
                instance = db.create_instance(f"t{i}-{volume_size or 0}", volume_size=volume_size)
                into.append(time.monotonic() - start)
                instance.delete()
        figure("instance_active_s", statistics.median(times))
        figure("instance_active_volume_s", statistics.median(volume_times))

        users = [{"name": "app", "password": PASSWORD, "databases": ["bench"]}]
        plain = db.create_instance("plain", volume_size=None, databases=["bench"], users=users)
        on_volume = db.create_instance("onvolume", volume_size=1, databases=["bench"], users=users)
        config = (db.server_of(plain).folder / "conf" / "postgresql.conf").read_text()
        peer = ByHand(lab.home / f"{lab.prefix}by-hand", plain.datastore_version, config)
        peer.start()
        rates = {"lab": [], "volume": [], "hand": []}
        for _ in range(ROUNDS):
            rates["lab"].append(inserts_per_s(plain.conninfo("app", PASSWORD, "bench")))
            rates["hand"].append(inserts_per_s(peer.conninfo))
            rates["volume"].append(inserts_per_s(on_volume.conninfo("app", PASSWORD, "bench")))
        lab_rps, hand_rps = statistics.median(rates["lab"]), statistics.median(rates["hand"])
        figure("insert_rps_lab", lab_rps)
        figure("insert_rps_by_hand", hand_rps)
        figure("insert_rps_ratio", lab_rps / hand_rps)
        figure("insert_rps_ratio_volume", statistics.median(rates["volume"]) / hand_rps)

        # backup -> restore: exactly the same rows
        with plain.connect("app", PASSWORD, "bench") as conn:
            before = conn.execute("SELECT id, payload FROM bench ORDER BY id").fetchall()
        db.create_backup(plain, "bench-backup")
        copy = db.create_instance("restored", restore_point="bench-backup", volume_size=None)
        with copy.connect("app", PASSWORD, "bench") as conn:
            after = conn.execute("SELECT id, payload FROM bench ORDER BY id").fetchall()
        figure("backup_restore_equal", int(before == after and len(before) == INSERTS))
    finally:
        if peer is not None:
            peer.stop()
        lab.stop()


if __name__ == "__main__":
    main()
