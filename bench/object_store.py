"""Benchmark: cloudlab's object store against OpenStack Swift itself, on this machine, in one run.

One run sets up both servers, drives them with the same client load, tears both down and
prints one ``name value`` line per figure:

    small_ops_ratio     4 KiB PUT+GET ops/s with 8 concurrent clients, cloudlab over Swift (target >= 3)
    put_limit_ratio     cloudlab 4 KiB PUT/s over a bare write+fsync+rename loop (target >= 0.5)
    large_mbps_ratio    64 MiB upload + download MB/s, cloudlab over Swift (target >= 1)
    server_rss_mib      peak RSS of cloudlab's server process under all of that load (target <= 200)
    versioned_put_ratio 4 KiB PUT/s into a container with versioning enabled over one without, both
                        overwriting the same names, so that every versioned PUT keeps an older version
                        (target >= 0.8)

and the raw figures beside each ratio.

The peer is OpenStack Swift 2.38.3 from PyPI in its own virtual environment under the cache
(``$CLOUDLAB_CACHE/bench-swift-venv``, created on the first run and reused): an all-in-one on
127.0.0.1 with rings of one device, TempAuth, and memcached (Debian's) for its tokens, every
server with ``workers = 0`` (one process each), all in a temporary folder on the same disk as
cloudlab's store.  Both servers are driven through the Swift API by the same clients: for
4 KiB objects, wrk (``bench/object_store_put.lua`` and ``_get.lua``) with 8 keep-alive
connections, because a Python client costs more CPU per request than the servers it
measures; for the large object, ``http.client`` (streaming, so bound by the servers).  Both run at once
(the idle one costs nothing) and the measurements alternate in rounds, so that the load
other programs put on this shared machine falls on both sides alike.

cloudlab makes small uploads durable by group commit (one ``syncfs`` for every upload
waiting at that moment, ``cloudlab/object_store/commit.py``), while the bare loop fsyncs
each file, as the target defines it: the loop is the limit of one durable write at a
time per client, which a store that groups its flushes may approach or pass.

Usage: ``python bench/object_store.py [--seconds S] [--large-mib M] [--rounds R]``
"""

import argparse
import concurrent.futures
import http.client
import itertools
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cloudlab import config  # noqa: E402
from cloudlab.process import stop_process  # noqa: E402

SWIFT_VERSION = "2.38.3"
CLIENTS = 8             # concurrent clients for the small-object load
SMALL_SIZE = 4096
USER, KEY = "test:tester", "testing"


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, what, timeout=60):
    """Wait until something accepts connections on 127.0.0.1:``port``; fail if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


def stop(proc):
    """End one process this benchmark started, by its PID: TERM, then KILL."""
    stop_process(proc, timeout=10)


# ---------------------------------------------------------------------------- the peer

def swift_venv():
    """The virtual environment with OpenStack Swift; created (pip install) on first use."""
    venv = config.cache() / "bench-swift-venv"
    marker = venv / f".swift-{SWIFT_VERSION}"
    if not marker.exists():
        print(f"# installing swift=={SWIFT_VERSION} into {venv.name} (first run only)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin/pip"), "install", "-q", f"swift=={SWIFT_VERSION}"], check=True)
        marker.touch()
    return venv


SWIFT_CONF = """[swift-hash]
swift_hash_path_suffix = cloudlab-bench
[storage-policy:0]
name = gold
default = yes
"""

SERVER_CONF = """[DEFAULT]
devices = {devices}
mount_check = false
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
swift_dir = {etc}
log_level = WARNING
[pipeline:main]
pipeline = {kind}-server
[app:{kind}-server]
use = egg:swift#{kind}
[{kind}-replicator]
[{kind}-updater]
[{kind}-auditor]
"""

PROXY_CONF = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
swift_dir = {etc}
log_level = WARNING
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats tempauth copy dlo slo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcached}
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:dlo]
use = egg:swift#dlo
[filter:slo]
use = egg:swift#slo
"""


class SwiftPeer:
    """OpenStack Swift as a single-node all-in-one under ``workdir``, with its own memcached.

    Args:
        workdir: empty folder for configuration, rings, the device and logs.
    """

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.procs = []
        self.url = None

    def start(self):
        """Write configs and rings, start memcached and the four servers; return the auth URL."""
        venv = swift_venv()
        etc, devices, logs = (self.workdir / n for n in ("etc", "srv", "log"))
        for d in (etc, devices / "d1", logs):
            d.mkdir(parents=True)
        (etc / "swift.conf").write_text(SWIFT_CONF)
        ports = {kind: free_port() for kind in ("account", "container", "object", "proxy", "memcached")}
        for kind in ("account", "container", "object"):
            builder = str(etc / f"{kind}.builder")
            for args in (["create", "10", "1", "1"], ["add", f"r1z1-127.0.0.1:{ports[kind]}/d1", "1"],
                         ["rebalance"]):
                subprocess.run([str(venv / "bin/swift-ring-builder"), builder, *args],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            conf = etc / f"{kind}-server.conf"
            conf.write_text(SERVER_CONF.format(devices=devices, port=ports[kind], etc=etc, kind=kind))
        (etc / "proxy-server.conf").write_text(PROXY_CONF.format(port=ports["proxy"], etc=etc,
                                                                 memcached=ports["memcached"]))
        memcached = shutil.which("memcached") or "/usr/bin/memcached"
        if not os.path.exists(memcached):
            raise RuntimeError("memcached is missing: apt-get install memcached (see the Makefile)")
        self._spawn("memcached", [memcached, "-l", "127.0.0.1", "-p", str(ports["memcached"]), "-U", "0",
                                  "-u", "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")],
                    logs, ports["memcached"])
        for kind in ("account", "container", "object", "proxy"):
            self._spawn(f"swift-{kind}-server",
                        [str(venv / f"bin/swift-{kind}-server"), str(etc / f"{kind}-server.conf")],
                        logs, ports[kind])
        self.url = f"http://127.0.0.1:{ports['proxy']}/auth/v1.0"
        return self.url

    def _spawn(self, name, argv, logs, port):
        log = open(logs / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append(proc)
        wait_listening(port, proc, name)

    def stop(self):
        """Stop every process this peer started (by PID), newest first."""
        for proc in reversed(self.procs):
            stop(proc)
        self.procs.clear()


# ---------------------------------------------------------------------------- cloudlab

class CloudlabServer:
    """cloudlab's object store as a separate process: ``python -m cloudlab object-store``.

    Args:
        root: folder for its store.
    """

    def __init__(self, root):
        self.root = Path(root)
        self.proc = None
        self.url = None

    def start(self):
        """Start the server and return its TempAuth URL once it prints that it listens."""
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cloudlab", "object-store", "--root", str(self.root), "--port", str(port)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()  # the CLI prints its URL once it listens
        if not line:
            raise RuntimeError(f"cloudlab object-store exited ({self.proc.wait()}) without printing its URL")
        wait_listening(port, self.proc, "cloudlab object-store")
        # keep draining its output so that a chatty server can never block on a full pipe
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.url = f"http://127.0.0.1:{port}/auth/v1.0"
        return self.url

    def stop(self):
        """Stop the server process (by PID)."""
        if self.proc:
            stop(self.proc)


class PeakRss:
    """Samples a process's resident memory every few milliseconds in a thread; keeps the peak.

    Args:
        pid: process to watch.
        interval: seconds between samples.
    """

    def __init__(self, pid, interval=0.02):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------- the load

def authenticate(auth_url):
    """TempAuth v1: returns (storage URL, token)."""
    parts = urlsplit(auth_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", parts.path, headers={"X-Auth-User": USER, "X-Auth-Key": KEY})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    if resp.status // 100 != 2:
        raise RuntimeError(f"auth at {auth_url} answered {resp.status}")
    return resp.getheader("X-Storage-Url"), resp.getheader("X-Auth-Token")


class Client:
    """One client: one keep-alive HTTP connection speaking the Swift API.

    Args:
        storage_url: the account URL from TempAuth.
        token: the auth token.
    """

    def __init__(self, storage_url, token):
        parts = urlsplit(storage_url)
        self.base = parts.path.rstrip("/")
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        self.token = token

    def request(self, method, path, body=None, headers=None, expect=(200, 201, 202, 204), sink=False):
        """Send one request on the kept-alive connection; returns the body (or its length if ``sink``)."""
        headers = dict(headers or {}, **{"X-Auth-Token": self.token})
        self.conn.request(method, self.base + path, body=body, headers=headers)
        resp = self.conn.getresponse()
        if sink:
            n = 0
            while chunk := resp.read(1 << 20):
                n += len(chunk)
            data = n
        else:
            data = resp.read()
        if resp.status not in expect:
            raise RuntimeError(f"{method} {path} answered {resp.status}: {data!r:.200}")
        return data

    def close(self):
        """Close the connection."""
        self.conn.close()


def run_clients(clients, work):
    """Run ``work(client_index, client)`` on every client at once; returns the wall time in seconds."""
    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        start = time.perf_counter()
        for future in [pool.submit(work, i, c) for i, c in enumerate(clients)]:
            future.result()
        return time.perf_counter() - start


WRK_THREADS = 2        # wrk's threads (one per core); CLIENTS connections spread over them


def wrk(url, script, seconds, *script_args):
    """Run wrk with ``CLIENTS`` keep-alive connections; returns (requests/s, its output).

    The small-object load comes from wrk (C, Debian's package), not from Python
    threads: a Python client spends more CPU per request than the servers it
    measures, and on a 2-core machine that CPU is taken from the server under test.

    Raises:
        RuntimeError: wrk is missing, or any response was not 2xx.
    """
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed: `sudo apt-get install wrk` (make bench installs it)")
    out = subprocess.run(["wrk", "-t", str(WRK_THREADS), "-c", str(CLIENTS), "-d", f"{seconds}s",
                          "-s", str(REPO / "bench" / script), url, "--", *script_args],
                         capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout + out.stderr
    if out.returncode != 0 or "Non-2xx" in text or "Socket errors" in text:
        raise RuntimeError(f"wrk against {url} failed:\n{text}")
    for line in text.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1]), text
    raise RuntimeError(f"wrk printed no rate:\n{text}")


def small_ops(auth_url, seconds, container="bench-small"):
    """4 KiB PUTs, then GETs of them, from ``CLIENTS`` concurrent connections for ``seconds`` each.

    Returns (PUT/s, GET/s).
    """
    storage_url, token = authenticate(auth_url)
    client = Client(storage_url, token)
    client.request("PUT", f"/{container}")
    client.close()
    path = urlsplit(storage_url).path.rstrip("/") + f"/{container}"
    put_rate, text = wrk(storage_url, "object_store_put.lua", seconds, token, path)
    per_thread = int(text.split("objects_per_thread")[1].split()[0])
    # requests still in flight when wrk stopped may not have been stored: leave them out
    objects = per_thread - CLIENTS
    if objects < 1:
        raise RuntimeError(f"only {per_thread} objects per wrk thread were written in {seconds} s")
    get_rate, _ = wrk(storage_url, "object_store_get.lua", seconds, token, path, str(objects))
    return put_rate, get_rate


OVERWRITE_NAMES = 200  # names each wrk connection cycles through in the overwrite phases


def overwrite_puts(auth_url, seconds, container, versioned):
    """4 KiB PUTs that overwrite ``OVERWRITE_NAMES`` names per connection; returns PUT/s.

    With ``versioned`` the container has versioning enabled (Swift's ``X-Versions-Enabled``,
    the same state as S3's bucket versioning), so every overwrite keeps the old version.
    """
    storage_url, token = authenticate(auth_url)
    client = Client(storage_url, token)
    client.request("PUT", f"/{container}", headers={"X-Versions-Enabled": "true"} if versioned else None)
    if versioned:
        client.conn.request("HEAD", client.base + f"/{container}", headers={"X-Auth-Token": token})
        resp = client.conn.getresponse()
        resp.read()
        if resp.getheader("X-Versions-Enabled") != "True":
            raise RuntimeError(f"versioning was not enabled on {container}")
    client.close()
    path = urlsplit(storage_url).path.rstrip("/") + f"/{container}"
    rate, _ = wrk(storage_url, "object_store_put.lua", seconds, token, path, str(OVERWRITE_NAMES))
    return rate


def large_transfer(auth_url, size):
    """Upload then download one object of ``size`` bytes; returns MB/s over both (1 MB = 2**20 B)."""
    storage_url, token = authenticate(auth_url)
    client = Client(storage_url, token)
    client.request("PUT", "/bench-large")
    block = os.urandom(1 << 20)

    def body():
        # the same 1 MiB block over and over: generating 64 MiB of randomness is not what is measured
        for _ in range(size // len(block)):
            yield block

    start = time.perf_counter()
    client.request("PUT", "/bench-large/big", body=body(),
                   headers={"Content-Type": "application/octet-stream"})  # http.client sends it chunked
    middle = time.perf_counter()
    got = client.request("GET", "/bench-large/big", sink=True)
    end = time.perf_counter()
    client.close()
    if got != size:
        raise RuntimeError(f"downloaded {got} bytes of {size}")
    return 2 * size / (1 << 20) / (end - start), (middle - start), (end - middle)


def bare_put_limit(folder, seconds):
    """What the disk allows: write+fsync+rename of 4 KiB files, as many at once as the PUT load.

    The same ``CLIENTS`` threads as the PUT load each write their own files, so the
    disk sees as many durable writes in flight as cloudlab's server can have (one per
    client); one thread alone would understate the disk (fsyncs of different files
    overlap in the journal).  It runs as long as a PUT phase: this machine's disk
    absorbs a short burst much faster than a sustained load (measured: 1,600 files
    in a burst at 4,500-8,000/s, the same disk at 1,200-1,700/s over 4 s), so a
    shorter run would compare a burst with a sustained load.  No HTTP, no metadata,
    no index: the floor of a durable PUT.  Returns (files written, seconds).
    """
    body = os.urandom(SMALL_SIZE)
    Path(folder).mkdir(parents=True, exist_ok=True)
    counts = [0] * CLIENTS

    def work(i):
        for n in itertools.count():
            if time.perf_counter() >= deadline:
                break
            counts[i] += 1
            final = os.path.join(folder, f"c{i}-o{n}")
            tmp = final + ".tmp"
            with open(tmp, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, final)

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        start = time.perf_counter()
        deadline = start + seconds
        for future in [pool.submit(work, i) for i in range(CLIENTS)]:
            future.result()
        elapsed = time.perf_counter() - start
    return sum(counts), elapsed


def main(argv=None):
    """Run the whole benchmark and print one ``name value`` line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=4, help="seconds of each small-object phase (default 4)")
    parser.add_argument("--large-mib", type=int, default=64, help="size of the large object in MiB")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds (default 3)")
    args = parser.parse_args(argv)
    large = args.large_mib << 20
    # the temporary folder sits in the cache, on the same disk for both stores and the bare loop
    work = Path(tempfile.mkdtemp(prefix=f"{config.prefix()}bench-object-store-", dir=config.cache()))
    swift, cloudlab = SwiftPeer(work / "swift"), CloudlabServer(work / "cloudlab")
    figures = {}
    try:
        swift_url = swift.start()
        cloudlab_url = cloudlab.start()
        # This machine is shared and its load changes from second to second, so the
        # measurements alternate in rounds (Swift, bare loop, cloudlab, bare loop) and
        # each figure averages its rounds: a busy spell then weighs on every side alike.
        put, get, s_put, s_get, bare, s_large, c_large = [], [], [], [], [], [], []
        plain_over, versioned_over = [], []
        with PeakRss(cloudlab.proc.pid) as rss:
            for r in range(args.rounds):
                rates = small_ops(swift_url, args.seconds, f"bench-small-{r}")
                s_put.append(rates[0])
                s_get.append(rates[1])
                for side in ("before", "after"):
                    if side == "after":
                        rates = small_ops(cloudlab_url, args.seconds, f"bench-small-{r}")
                        put.append(rates[0])
                        get.append(rates[1])
                    # twice per round, to bracket cloudlab's PUTs
                    n, t = bare_put_limit(work / f"bare-{r}-{side}", args.seconds)
                    bare.append(n / t)
                s_large.append(large_transfer(swift_url, large)[0])
                c_large.append(large_transfer(cloudlab_url, large)[0])
                # versioned against unversioned, in alternating order from round to round
                order = (False, True) if r % 2 == 0 else (True, False)
                for versioned in order:
                    rate = overwrite_puts(cloudlab_url, args.seconds,
                                          f"bench-{'versioned' if versioned else 'plain'}-{r}", versioned)
                    (versioned_over if versioned else plain_over).append(rate)
        mean = statistics.fmean
        # ops/s of a PUT+GET mix with equal counts: the harmonic mean of the two rates
        s_ops = 2 / (1 / mean(s_put) + 1 / mean(s_get))
        c_ops = 2 / (1 / mean(put) + 1 / mean(get))
        c_put, bare_rate = mean(put), mean(bare)
        s_mbps, c_mbps = mean(s_large), mean(c_large)
        print(f"# rounds: cloudlab PUT/s {[round(x) for x in put]} bare {[round(x) for x in bare]} "
              f"Swift PUT/s {[round(x) for x in s_put]} overwrite PUT/s unversioned "
              f"{[round(x) for x in plain_over]} versioned {[round(x) for x in versioned_over]}", file=sys.stderr)
        figures = {
            "small_ops_ratio": c_ops / s_ops,
            "cloudlab_small_ops_s": c_ops, "swift_small_ops_s": s_ops,
            "cloudlab_put_s": c_put, "swift_put_s": mean(s_put),
            "cloudlab_get_s": mean(get), "swift_get_s": mean(s_get),
            "put_limit_ratio": c_put / bare_rate,
            "bare_put_s": bare_rate,
            "large_mbps_ratio": c_mbps / s_mbps,
            "cloudlab_large_mbps": c_mbps, "swift_large_mbps": s_mbps,
            "server_rss_mib": rss.peak / (1 << 20),
            "versioned_put_ratio": mean(versioned_over) / mean(plain_over),
            "cloudlab_overwrite_put_s": mean(plain_over),
            "cloudlab_versioned_put_s": mean(versioned_over),
        }
    finally:
        cloudlab.stop()
        swift.stop()
        shutil.rmtree(work, ignore_errors=True)
    for name, value in figures.items():
        print(f"{name} {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
