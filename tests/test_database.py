"""The database service on the real lab host: real PostgreSQL instances, real psycopg, the real object store.

Checked: an instance goes BUILD -> ACTIVE and is a node of its own on the lab network
(its own network and mount namespaces, its volume mounted only there, the flavor's
limits in its cgroup); psql in the lab network and a QEMU guest reach it at
ADDRESS:5432; wrong credentials are refused; databases and users come and go;
restart and resize keep the data; a backup streamed into the object store restores
into a new instance with exactly the same rows; bad requests say what was wrong and
leave nothing; deleting an instance removes its process, data, volume and address;
after the lab stops nothing of its databases is left.
"""

import hashlib
import ipaddress
import os
import subprocess
import time

import pytest

import cloudlab as cl
from cloudlab import config, host
from cloudlab.database import datastore
from cloudlab.host import node
from cloudlab.errors import CloudlabError, Conflict, InvalidInput, NotFound

pytestmark = pytest.mark.lab
PSQL = str(datastore.bin_dir(max(datastore.versions().get("postgresql", ["15"]))) / "psql")


@pytest.fixture(scope="module")
def lab():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    if not datastore.versions():
        pytest.skip("PostgreSQL is not installed (make system installs it)")
    lab = cl.Lab(name="dbtest")
    yield lab
    db = lab.database
    keep = db.create_instance("keep", volume_size=None)
    db.create_backup(keep, "kept-until-the-end")     # a backup whose object store stops before the service
    lab.stop()
    assert lab.running == [] and not (lab.home / f"{lab.prefix}object_store").exists()
    # what the database service made is gone with it (the host itself stays up for other tests)
    assert host.leftovers(prefix=lab.prefix, only=["files", "database", "block storage"]) == []
    assert not [p for p, _ in host.ownership.Scope.current().processes
                if p.name in ("postgres", "qemu-storage-daemon") and lab.prefix in _environ_or_cmdline(p)]


def _environ_or_cmdline(proc):
    try:
        return open(f"/proc/{proc.pid}/environ", "rb").read().decode(errors="replace") + proc.cmdline
    except OSError:
        return proc.cmdline


@pytest.fixture(scope="module")
def shop(lab):
    return lab.database.create_instance(
        "shop", flavor="m1.small", volume_size=1, databases=["orders"],
        users=[{"name": "app", "password": "app-secret", "databases": ["orders"]}])


def psql_in_lab_network(lab, conninfo, sql):
    """psql run in the lab's network namespace (the lab network's own side), over TCP to the instance."""
    return subprocess.run(["ip", "netns", "exec", lab.host.netns, PSQL, "-X", "-A", "-t", "-w", conninfo,
                           "-c", sql], capture_output=True, text=True, timeout=30)


def test_an_instance_is_a_postgresql_server_on_the_lab_network(lab, shop):
    assert shop.status == "ACTIVE" and shop.history == ["BUILD", "ACTIVE"]
    assert (shop.datastore, shop.datastore_version) == ("postgresql", datastore.versions()["postgresql"][0])
    assert ipaddress.ip_address(shop.address) in lab.host.subnet and shop.port == 5432
    assert lab.database.list_instances() == [shop] and lab.database.get_instance("shop") is shop
    assert shop.node == next(n.name for n in lab.topology.nodes if n.has("storage"))
    server = lab.database.server_of(shop)
    # its own network namespace: loopback and one cable into the lab's bridge
    links = subprocess.run(["nsenter", "-t", str(server.pid), "-n", "ip", "-o", "-4", "addr"],
                           capture_output=True, text=True, check=True).stdout
    assert sorted(line.split()[1] for line in links.splitlines()) == ["eth0", "lo"]
    assert f"{shop.address}/{lab.host.subnet.prefixlen}" in links
    # the real server answers, on the lab network, with its version
    out = psql_in_lab_network(lab, shop.conninfo("app", "app-secret", "orders", via="network"), "SHOW server_version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(shop.datastore_version)
    # its data is on its volume, mounted in its own mount namespace only
    volume = lab.block_storage.get_volume(shop.volume_id)
    assert volume.status == "in-use" and volume.size == 1 and volume.servers == ["database instance shop"]
    inside = subprocess.run(["nsenter", "-t", str(server.pid), "-m", "findmnt", "-n", "-o", "SOURCE,FSTYPE",
                             "/var/lib/postgresql/data"], capture_output=True, text=True, check=True).stdout
    assert "/dev/loop" in inside and "ext4" in inside
    assert "/var/lib/postgresql/data" not in open("/proc/self/mountinfo").read()
    # the flavor's memory and CPU are the kernel's limits; the settings fit in them
    limits = shop.limits()
    assert limits["memory_bytes"] == 256 * 2**20 and limits["cpus"] == 1.0
    with shop.connect("app", "app-secret", "orders") as conn:
        assert conn.execute("SHOW shared_buffers").fetchone()[0] == "64MB"


def test_a_server_on_the_lab_network_reaches_the_instance(lab, shop):
    guest = lab.compute.create_server("client", timeout=120)
    guest.wait_for_address(timeout=60)      # the guest needs its leased address on the lab network
    try:
        # an SSLRequest (length 8, code 80877103): a PostgreSQL server answers one byte, N (no TLS here)
        out = guest.run(f"printf '\\0\\0\\0\\10\\4\\322\\26\\57' | nc -w 3 {shop.address} 5432", timeout=30)
        assert out.stdout.strip() == "N", out
    finally:
        guest.delete()


def test_wrong_credentials_are_refused(lab, shop):
    with pytest.raises(CloudlabError, match="password authentication failed"):
        shop.connect("app", "not-the-password", "orders")
    with pytest.raises(CloudlabError, match="password authentication failed"):
        shop.connect("nobody", "app-secret", "orders")
    out = psql_in_lab_network(lab, shop.conninfo("app", "wrong", "orders", via="network"), "SELECT 1")
    assert out.returncode != 0 and "password authentication failed" in out.stderr
    # the right ones work on both paths
    assert psql_in_lab_network(lab, shop.conninfo("app", "app-secret", "orders", via="network"),
                               "SELECT 1").stdout.strip() == "1"


def test_databases_and_users(lab, shop):
    db = lab.database
    assert db.list_databases(shop) == ["orders"]
    assert db.list_users(shop) == [{"name": "app", "databases": ["orders"]}]
    db.create_database(shop, "reports")
    db.create_user(shop, "analyst", "a-secret", databases=["reports"])
    assert db.list_databases(shop) == ["orders", "reports"]
    assert {"name": "analyst", "databases": ["reports"]} in db.list_users(shop)
    with shop.connect("analyst", "a-secret", "reports") as conn:
        conn.execute("CREATE TABLE r (x int)")          # may create tables in its database (PostgreSQL 15 rule)
        conn.commit()
    with pytest.raises(Conflict, match="already exists"):
        db.create_database(shop, "reports")
    with pytest.raises(Conflict, match="already exists"):
        db.create_user(shop, "analyst", "again")
    with pytest.raises(NotFound, match="no database 'nowhere'"):
        db.create_user(shop, "someone", "pw", databases=["nowhere"])
    db.delete_user(shop, "analyst")
    db.delete_database(shop, "reports")
    assert db.list_databases(shop) == ["orders"]
    assert [u["name"] for u in db.list_users(shop)] == ["app"]
    with pytest.raises(CloudlabError, match="password authentication failed"):
        shop.connect("analyst", "a-secret", "postgres")
    with pytest.raises(NotFound, match="no user 'analyst'"):
        db.delete_user(shop, "analyst")


@pytest.mark.parametrize("name", ["Orders", "1st", "drop table", "x" * 64, "", None, "caf\u00e9"])
def test_names_the_rule_refuses(lab, shop, name):
    with pytest.raises(InvalidInput, match="lower-case letters, digits"):
        lab.database.create_database(shop, name)
    with pytest.raises(InvalidInput, match="lower-case letters, digits"):
        lab.database.create_user(shop, name, "pw")


def test_reserved_names_are_refused(lab, shop):
    with pytest.raises(InvalidInput, match="reserved.*pg_"):
        lab.database.create_user(shop, "pg_monitor2", "pw")
    with pytest.raises(InvalidInput, match="reserved"):
        lab.database.create_user(shop, "os_admin", "pw")
    with pytest.raises(InvalidInput, match="reserved"):
        lab.database.create_database(shop, "template1")


def _fill(conn, rows):
    conn.execute("CREATE TABLE IF NOT EXISTS item (id int PRIMARY KEY, name text, price numeric(8,2))")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO item VALUES (%s, %s, %s)",
                        [(i, hashlib.sha1(str(i).encode()).hexdigest(), i * 1.25) for i in range(rows)])
    conn.commit()


def _rows(conn):
    return conn.execute("SELECT id, name, price FROM item ORDER BY id").fetchall()


def test_backup_then_restore_gives_the_same_rows(lab, shop):
    db = lab.database
    with shop.connect("app", "app-secret", "orders") as conn:
        _fill(conn, 500)
        before = _rows(conn)
    backup = db.create_backup(shop, "before-sale", description="500 items")
    assert backup.status == "COMPLETED" and backup.size > 0
    assert db.list_backups(shop) == [backup] and db.get_backup("before-sale") is backup
    # the dump is an object in the object store's container, with metadata naming its instance
    swift = lab.object_store.connection()
    head = swift.head_object("database_backups", backup.object_name)
    assert int(head["content-length"]) == backup.size and head["etag"] == backup.etag
    assert head["x-object-meta-instance"] == "shop"
    assert head["x-object-meta-datastore-version"] == shop.datastore_version
    # a change after the backup is not in the restore
    with shop.connect("app", "app-secret", "orders") as conn:
        conn.execute("DELETE FROM item WHERE id < 100")
        conn.commit()
    copy = db.create_instance("shop-copy", restore_point="before-sale", volume_size=None)
    try:
        assert copy.restored_from == backup.id and copy.status == "ACTIVE"
        assert copy.address != shop.address
        # the users came along with their passwords; the rows are exactly those backed up
        with copy.connect("app", "app-secret", "orders") as conn:
            assert _rows(conn) == before
        assert db.list_databases(copy) == ["orders"]
    finally:
        copy.delete()
    backup.delete()
    assert db.list_backups() == []
    names = [o["name"] for o in swift.get_container("database_backups")[1]]
    assert backup.object_name not in names


def test_restart_keeps_data_and_resize_changes_limits_and_volume(lab, shop):
    db = lab.database
    with shop.connect("app", "app-secret", "orders") as conn:
        count = conn.execute("SELECT count(*) FROM item").fetchone()[0]
    old_pid = db.server_of(shop).pid
    db.restart_instance(shop)
    assert shop.status == "ACTIVE" and shop.history[-2:] == ["REBOOT", "ACTIVE"]
    assert db.server_of(shop).pid != old_pid
    db.resize_instance(shop, flavor="m1.medium", volume_size=2)
    assert shop.history[-2:] == ["RESIZE", "ACTIVE"] and (shop.flavor, shop.volume_size) == ("m1.medium", 2)
    assert shop.limits()["memory_bytes"] == 512 * 2**20 and shop.limits()["cpus"] == 2.0
    assert lab.block_storage.get_volume(shop.volume_id).size == 2
    server = db.server_of(shop)
    size = subprocess.run(["nsenter", "-t", str(server.pid), "-m", "df", "-B1", "--output=size",
                           "/var/lib/postgresql/data"], capture_output=True, text=True, check=True).stdout
    assert int(size.split()[-1]) > 1.5 * 2**30
    with shop.connect("app", "app-secret", "orders") as conn:
        assert conn.execute("SELECT count(*) FROM item").fetchone()[0] == count
        assert conn.execute("SHOW shared_buffers").fetchone()[0] == "128MB"
    with pytest.raises(InvalidInput, match="only grow"):
        db.resize_instance(shop, volume_size=1)


def test_bad_requests_say_what_was_wrong(lab, shop):
    db = lab.database
    with pytest.raises(NotFound, match=r"no datastore 'mysql'.*\n.*postgresql 1"):
        db.create_instance("x", datastore_name="mysql")
    with pytest.raises(NotFound, match=r"no version '9\.6'.*\n.*postgresql 1"):
        db.create_instance("x", datastore_version="9.6")
    with pytest.raises(Conflict, match="'shop' already exists"):
        db.create_instance("shop")
    with pytest.raises(NotFound, match="no backup named 'last-week'"):
        db.create_instance("x", restore_point="last-week")
    with pytest.raises(InvalidInput, match="lower-case letters"):
        db.create_instance("x", databases=["Bad-Name"])
    with pytest.raises(InvalidInput, match="volume_size"):
        db.create_instance("x", volume_size=0)
    with pytest.raises(InvalidInput, match="service's own"):
        db.create_instance("x", configuration={"port": 5433})
    assert [i.name for i in db.list_instances()] == ["shop"]


def test_a_server_that_fails_to_start_shows_its_log_and_leaves_nothing(lab, shop):
    db = lab.database
    volumes = len(lab.block_storage.list_volumes())
    with pytest.raises(CloudlabError, match=r'(?s)stopped while starting.*invalid value for parameter "shared_buffers"'):
        db.create_instance("broken", volume_size=1, configuration={"shared_buffers": "lots"})
    assert [i.name for i in db.list_instances()] == ["shop"]
    assert len(lab.block_storage.list_volumes()) == volumes
    assert not db.folder_of_name("broken").exists()
    # the only cgroups and volume files left are the running instance's
    mine = (db.server_of(shop).limits.name, str(db.folder_of(shop)))
    assert all(any(m in line for m in mine) for line in host.leftovers(prefix=lab.prefix, only=["database"]))
    # without waiting, the failure is the instance's ERROR status and fault
    broken = db.create_instance("broken", volume_size=None, configuration={"shared_buffers": "lots"}, wait=False)
    with pytest.raises(CloudlabError, match="is ERROR"):
        broken.wait(timeout=60)
    assert broken.status == "ERROR" and "shared_buffers" in broken.fault
    broken.delete()


def test_delete_removes_process_data_and_address(lab, shop):
    db = lab.database
    temp = db.create_instance("temp", volume_size=1, databases=["scratch"])
    server = db.server_of(temp)
    pid, folder, volume_id, address = server.pid, server.folder, temp.volume_id, temp.address
    cgroups = server.limits.dirs
    assert os.path.exists(f"/proc/{pid}") and folder.exists() and all(d.exists() for d in cgroups)
    link = node.link_name(folder, "db")
    assert subprocess.run(["ip", "-n", lab.host.netns, "link", "show", link], capture_output=True).returncode == 0
    temp.delete()
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")
    assert not folder.exists() and not any(d.exists() for d in cgroups)
    with pytest.raises(NotFound):
        lab.block_storage.get_volume(volume_id)
    with pytest.raises(NotFound, match="no database instance named 'temp'"):
        db.get_instance("temp")
    # its cable is gone from the bridge and nothing answers at its address any more
    assert subprocess.run(["ip", "-n", lab.host.netns, "link", "show", link], capture_output=True).returncode != 0
    gone = psql_in_lab_network(lab, f"host={address} port=5432 user=app password=x connect_timeout=2", "SELECT 1")
    assert gone.returncode != 0 and "password" not in gone.stderr
    # and the address is free for the next instance
    again = db.create_instance("temp2", volume_size=None, wait=False)
    assert again.status == "BUILD" and again.address == address
    assert again.wait(timeout=60).status == "ACTIVE" and again.history == ["BUILD", "ACTIVE"]
    again.delete()


def test_host_clean_ends_instances_a_lost_session_left(lab, shop):
    # as `host down` / `cloudlab clean` find them: by their cgroups (this host's only), not by the service's records
    from cloudlab.database import clean
    from cloudlab.database.cleanup import running
    db = lab.database
    lost = db.create_instance("lost", volume_size=1)
    server = db.server_of(lost)
    pid, mount = server.pid, str(server.volume_path)
    other = db.server_of(shop).pid
    removed = clean(f"{lab.prefix}", config.home(), host.state_dir())
    assert f"database server process {pid}" in removed and f"volume file {mount}" in removed
    assert not running(pid) and mount not in open("/proc/self/mountinfo").read()
    assert not any(d.exists() for d in server.limits.dirs)
    assert not running(other)          # shop was this lab's too
    # the service still deletes what remains of them (records, volumes, folders)
    lost.delete()
    assert host.leftovers(prefix=lab.prefix, only=["database"]) == []


def test_a_lab_restarted_after_a_crash_frees_the_names(lab):
    # a kernel that died leaves the service's records, a server, a volume; the next session's start clears them
    from cloudlab.database import Database
    db = lab.database
    crashed = db.create_instance("crashed", volume_size=1)
    pid = db.server_of(crashed).pid
    fresh = Database(lab)               # what a new kernel's lab.database would be, reading the same records
    fresh.start()
    from cloudlab.database.cleanup import running
    assert not running(pid)
    assert not db.folder_of(crashed).exists()
    assert not [v for v in lab.block_storage.list_volumes() if v.name == "database-crashed"]
    again = fresh.create_instance("crashed", volume_size=1)
    assert again.status == "ACTIVE"
    fresh.stop()
    db._instances.pop(crashed.id)       # the old service object's record of it is stale now
    db._servers.pop(crashed.id)
