"""OpenStack API benchmark: the real clients over the lab against the lab's own Python API.

Prints one ``name value`` line per figure (issue 16's targets in brackets):

    api_create_ratio     median(openstacksdk create_server -> wait_for_server ACTIVE) /
                         median(lab.compute.create_server -> ACTIVE)                   [<= 1.2]
    api_create_s         median seconds of the openstacksdk path (polling every 0.25 s)
    lab_create_s         median seconds of lab.compute.create_server(wait=True)
    sdk_default_poll_s   one openstacksdk create with wait_for_server's default 2 s polling, for reference
    cli_list_s           median wall time of `openstack server list` with 10 servers, the CLI's
                         own start-up included                                          [<= 2 s]
    cli_startup_s        median wall time of `openstack --version`: the CLI's start-up alone
    volume_create_ratio  median(openstacksdk block_storage.create_volume -> wait_for_status available) /
                         median(lab.block_storage.create_volume), 1 GiB empty volumes      [report]
    volume_create_s      median seconds of the openstacksdk path
    lab_volume_create_s  median seconds of lab.block_storage.create_volume
    token_validate_rps   token validations per second answered by Keystone itself (GET /v3/auth/tokens,
                         one client, no cache in front)                                 [report]
    token_cached_rps     the same through the API's validation cache (what a service pays per request)

The two create paths boot the same image with the same flavor and alternate, so a
noisy neighbour slows both alike.  Run with ``make bench`` or ``python bench/openstack_api.py``
(which keeps the lab host in its own network namespace, like the tests).
"""

import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("CLOUDLAB_NETNS", "cloudlab-bench")

import cloudlab as cl  # noqa: E402
from cloudlab import host as host_mod  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
LIST_SERVERS = 10
LIST_ROUNDS = 5
VALIDATE_SECONDS = 3.0
VOLUME_ROUNDS = 7


def figure(name, value):
    """Print one figure as ``name value``."""
    print(f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}", flush=True)


def sdk_create(conn, lab, name, interval):
    """Seconds from openstacksdk's create_server to wait_for_server seeing ACTIVE."""
    image = conn.image.find_image("busybox", ignore_missing=False)
    network = conn.network.find_network(lab.host.network, ignore_missing=False)
    started = time.monotonic()
    server = conn.compute.create_server(name=name, image_id=image.id, flavor_id="m1.tiny",
                                        networks=[{"uuid": network.id}])
    conn.compute.wait_for_server(server, status="ACTIVE", interval=interval, wait=180)
    took = time.monotonic() - started
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, interval=0.25, wait=60)
    return took


def create_ratio(lab, conn):
    """Alternate the two create paths; return (median sdk, median lab)."""
    sdk, direct = [], []
    sdk_create(conn, lab, "warm", 0.25)                 # first requests start the compute service
    for i in range(ROUNDS):
        started = time.monotonic()
        server = lab.compute.create_server(f"lab{i}", image="busybox", flavor="m1.tiny", timeout=180)
        direct.append(time.monotonic() - started)
        server.delete()
        sdk.append(sdk_create(conn, lab, f"sdk{i}", 0.25))
    return statistics.median(sdk), statistics.median(direct)


def cli_times(lab):
    """(median `openstack server list` with LIST_SERVERS servers, median `openstack --version`)."""
    api = lab.api
    with ThreadPoolExecutor(LIST_SERVERS) as pool:
        servers = list(pool.map(lambda i: lab.compute.create_server(f"list{i}", flavor="m1.tiny", wait=False),
                                range(LIST_SERVERS)))
    for server in servers:
        lab.compute.wait_for_server(server, timeout=300)
    lists, startups = [], []
    api.cli("server", "list")                             # warm the page cache
    for _ in range(LIST_ROUNDS):
        result = api.cli("server", "list", "-f", "value", "-c", "Name")
        assert len(result.stdout.split()) == LIST_SERVERS, result.stdout
        lists.append(result.seconds)
        started = time.monotonic()
        subprocess.run([api.cli_path(), "--version"], capture_output=True, check=True, env=api.env())
        startups.append(time.monotonic() - started)
    with ThreadPoolExecutor(LIST_SERVERS) as pool:
        list(pool.map(lambda s: s.delete(), servers))
    return statistics.median(lists), statistics.median(startups)


def volume_ratio(lab, conn):
    """Alternate the two volume create paths (1 GiB, empty); return (median sdk, median lab)."""
    sdk, direct = [], []
    warm = conn.block_storage.create_volume(size=1, name="warmvol")      # starts the block storage service
    conn.block_storage.delete_volume(warm)
    for i in range(VOLUME_ROUNDS):
        started = time.monotonic()
        volume = lab.block_storage.create_volume(f"labvol{i}", size=1)
        direct.append(time.monotonic() - started)
        volume.delete()
        started = time.monotonic()
        volume = conn.block_storage.create_volume(size=1, name=f"sdkvol{i}")
        conn.block_storage.wait_for_status(volume, status="available", interval=0.05, wait=60)
        sdk.append(time.monotonic() - started)
        conn.block_storage.delete_volume(volume)
    return statistics.median(sdk), statistics.median(direct)


def validate_rates(lab):
    """(validations/s by Keystone itself, validations/s through the API's cache)."""
    import requests
    from cloudlab.api.auth import TokenValidator
    identity = lab.identity
    user_token = identity.issue_token("demo")[0]
    service_token = identity.service_token("nova")
    session = requests.Session()
    url = f"{identity.url}/v3/auth/tokens"
    headers = {"X-Auth-Token": service_token, "X-Subject-Token": user_token}
    count, started = 0, time.monotonic()
    while time.monotonic() - started < VALIDATE_SECONDS:
        response = session.get(url, headers=headers, timeout=10)
        assert response.status_code == 200, response.status_code
        count += 1
    keystone = count / (time.monotonic() - started)
    validator = TokenValidator(identity, "nova")
    count, started = 0, time.monotonic()
    while time.monotonic() - started < 1.0:
        assert validator.validate(user_token) is not None
        count += 1
    return keystone, count / (time.monotonic() - started)


def main():
    """Run every figure with one lab, then stop it."""
    host_mod.up(progress=lambda line: None)
    lab = cl.Lab(name="osbench")
    try:
        conn = lab.api.connect()
        sdk, direct = create_ratio(lab, conn)
        figure("api_create_ratio", sdk / direct)
        figure("api_create_s", sdk)
        figure("lab_create_s", direct)
        figure("sdk_default_poll_s", sdk_create(conn, lab, "poll2", 2.0))
        sdk_volume, lab_volume = volume_ratio(lab, conn)
        figure("volume_create_ratio", sdk_volume / lab_volume)
        figure("volume_create_s", sdk_volume)
        figure("lab_volume_create_s", lab_volume)
        listed, startup = cli_times(lab)
        figure("cli_list_s", listed)
        figure("cli_startup_s", startup)
        keystone, cached = validate_rates(lab)
        figure("token_validate_rps", keystone)
        figure("token_cached_rps", cached)
    finally:
        lab.stop()


if __name__ == "__main__":
    main()
