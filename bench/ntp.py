"""NTP benchmark: cloudlab's server against chronyd, measured in one run with one load generator.

Prints one ``name value`` line per figure:

``cloudlab_rps`` / ``chronyd_rps``
    replies per second on loopback with 64 requests in flight, from the same C load
    generator (bench/ntp_loadgen.c, compiled here with gcc), alternating rounds between
    the two servers so that machine noise hits both; the median round of each counts.
``rps_ratio``
    cloudlab_rps / chronyd_rps (target >= 0.25).
``offset_us`` / ``chronyd_offset_us``
    median |offset| that ``chronyd -Q`` measures against cloudlab's unskewed server, and
    against chronyd itself (target <= 100 for cloudlab).
``converge_polls``
    polls for a stratum 2 server skewed by +2 s to come within 1 ms of stratum 1 (target <= 10).

Both servers run as separate processes on 127.0.0.1, each ended by its PID.
"""

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from cloudlab.ntp import NTPServer, query  # noqa: E402
from cloudlab.process import stop_process  # noqa: E402

ROUNDS = int(os.environ.get("NTP_BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("NTP_BENCH_SECONDS", "3"))
INFLIGHT = 64
SOCKETS = 1  # chronyd's ~425k/s on this kind of machine was seen from one socket


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_answering(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server on port {port} exited early")
        try:
            query(f"127.0.0.1:{port}", timeout=0.2)
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"server on port {port} never answered")


def stop(proc):
    """End a server this benchmark started (by its handle, so by PID)."""
    stop_process(proc)


def load(loadgen, port):
    out = subprocess.run([loadgen, "127.0.0.1", str(port), str(SECONDS), str(INFLIGHT), str(SOCKETS)],
                         capture_output=True, text=True, timeout=SECONDS + 30)
    match = re.search(r"rps (\d+) resets (\d+)", out.stdout)
    if not match:
        raise SystemExit(f"load generator failed: {out.stdout}{out.stderr}")
    return float(match.group(1))


def chrony_offset_us(chronyd, port, times=5):
    values = []
    for _ in range(times):
        out = subprocess.run([chronyd, "-Q", f"server 127.0.0.1 port {port} iburst maxsamples 1"],
                             capture_output=True, text=True, timeout=30)
        match = re.search(r"System clock wrong by (-?[\d.]+) seconds", out.stdout + out.stderr)
        if match:
            values.append(abs(float(match.group(1))) * 1e6)
    if not values:
        raise SystemExit("chronyd -Q printed no offset")
    return statistics.median(values)


def converge_polls():
    """Polls until a stratum 2 server started 2 s fast is within 1 ms of stratum 1."""
    with NTPServer(name="s1") as s1, NTPServer(upstreams=[s1.url], offset=2.0, poll=0.5, name="s2") as s2:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if s2.syncer.polls and abs(s2.clock.offset() - s1.clock.offset()) < 1e-3:
                return s2.syncer.polls
            time.sleep(0.005)
    return float("nan")


def main():
    chronyd = shutil.which("chronyd") or "/usr/sbin/chronyd"
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not os.path.exists(chronyd) or not gcc:
        raise SystemExit("bench/ntp.py needs chronyd (Debian chrony) and gcc: make setup")
    with tempfile.TemporaryDirectory(prefix="cloudlab-ntp-bench-") as tmp:
        loadgen = os.path.join(tmp, "ntp_loadgen")
        subprocess.run([gcc, "-O2", "-o", loadgen, str(HERE / "ntp_loadgen.c")], check=True)
        chrony_port, ours_port = free_port(), free_port()
        conf = Path(tmp) / "chrony.conf"
        conf.write_text(f"port {chrony_port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 10\n"
                        f"cmdport 0\npidfile {tmp}/chronyd.pid\nbindcmdaddress {tmp}/chronyd.sock\n")
        chrony = subprocess.Popen([chronyd, "-f", str(conf), "-x", "-d", "-u", "root", "-L", "0"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ours = subprocess.Popen([sys.executable, "-m", "cloudlab", "ntp", "serve", "--port", str(ours_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=str(ROOT))
        try:
            wait_answering(chrony_port, chrony)
            wait_answering(ours_port, ours)
            chrony_rounds, ours_rounds = [], []
            for _ in range(ROUNDS):
                chrony_rounds.append(load(loadgen, chrony_port))
                ours_rounds.append(load(loadgen, ours_port))
            chrony_rps = statistics.median(chrony_rounds)
            ours_rps = statistics.median(ours_rounds)
            offset = chrony_offset_us(chronyd, ours_port)
            chrony_offset = chrony_offset_us(chronyd, chrony_port)
        finally:
            stop(ours)
            stop(chrony)
    polls = converge_polls()
    print(f"rps_ratio {ours_rps / chrony_rps:.3f}")
    print(f"cloudlab_rps {ours_rps:.0f}")
    print(f"chronyd_rps {chrony_rps:.0f}")
    print(f"offset_us {offset:.1f}")
    print(f"chronyd_offset_us {chrony_offset:.1f}")
    print(f"converge_polls {polls}")
    print(f"# rounds (rps): chronyd {[round(r) for r in chrony_rounds]} cloudlab {[round(r) for r in ours_rounds]}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
