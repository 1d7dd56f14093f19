"""Crash safety: SIGKILL the object store during concurrent uploads, restart it on the
same root, and check that it never lies.

* every upload the server acknowledged (201 with an ETag) is there, whole, with its
  metadata and ETag;
* every object it lists is whole: its bytes are exactly what a client sent, even for
  uploads that were in flight when the server died (those may be absent, never partial);
* temporary files of the interrupted uploads are cleaned up once the container is loaded.
"""

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.slow

UPLOADERS = 6
# both write modes (with and without directory fsync) must keep every promise
SYNC_DIRS = [False, True]


def start_server(root, sync_dirs=False):
    extra = ["--sync-dirs"] if sync_dirs else []
    proc = subprocess.Popen([sys.executable, "-m", "cloudlab", "object-store", "--root", str(root), "--port", "0",
                             *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    line = proc.stdout.readline()
    assert "listening on http://127.0.0.1:" in line, proc.stderr.read()
    port = int(line.split("http://127.0.0.1:")[1].split()[0])
    return proc, port


def login(port):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h.request("GET", "/auth/v1.0", headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"})
    r = h.getresponse()
    r.read()
    return h, r.getheader("X-Auth-Token")


def uploader(port, token, worker, sent, acked, stop):
    """Upload distinct objects until the server dies, sending each body in pieces."""
    seq = 0
    while not stop.is_set():
        name = f"w{worker}/obj-{seq:04d}"
        size = (seq * 7919 + worker * 104729) % (3 << 20) + 1
        body = os.urandom(size)
        meta = f"{worker}-{seq}"
        sent[name] = (hashlib.md5(body).hexdigest(), meta)
        try:
            h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            h.putrequest("PUT", f"/v1/AUTH_test/crash/{name}")
            h.putheader("X-Auth-Token", token)
            h.putheader("X-Object-Meta-Seq", meta)
            h.putheader("Content-Length", str(size))
            h.endheaders()
            for i in range(0, size, 256 << 10):
                h.send(body[i:i + (256 << 10)])
            r = h.getresponse()
            r.read()
            h.close()
        except (OSError, http.client.HTTPException):
            return              # the server is gone
        if r.status == 201:
            assert r.getheader("ETag") == sent[name][0]
            acked[name] = sent[name]
        seq += 1


@pytest.mark.parametrize("sync_dirs", SYNC_DIRS)
def test_sigkill_during_uploads_loses_nothing_acknowledged(tmp_path, sync_dirs):
    root = tmp_path / "root"
    proc, port = start_server(root, sync_dirs)
    try:
        h, token = login(port)
        h.request("PUT", "/v1/AUTH_test/crash", body=b"", headers={"X-Auth-Token": token})
        assert h.getresponse().status == 201
        sent, acked, stop = {}, {}, threading.Event()
        threads = [threading.Thread(target=uploader, args=(port, token, w, sent, acked, stop), daemon=True)
                   for w in range(UPLOADERS)]
        for t in threads:
            t.start()
        deadline = time.time() + 60
        while len(acked) < 25 and time.time() < deadline:
            time.sleep(0.05)
        assert len(acked) >= 25, "uploads were too slow to reach the crash point"
        time.sleep(0.1)         # uploads are mid-body now
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(15)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()

    in_flight = set(sent) - set(acked)
    assert in_flight, "the kill should have interrupted some uploads"

    partial = [f for _, _, files in os.walk(root) for f in files if f.startswith(".tmp-")]
    print(f"{len(acked)} acknowledged, {len(in_flight)} in flight, {len(partial)} partial temp files")
    proc, port = start_server(root)
    try:
        h, token = login(port)
        h.request("GET", "/v1/AUTH_test/crash?format=json&limit=10000", headers={"X-Auth-Token": token})
        r = h.getresponse()
        listing = {e["name"]: e for e in json.loads(r.read())}
        # 1. every acknowledged object is intact, with its metadata and ETag
        for name, (md5, meta) in acked.items():
            h.request("GET", f"/v1/AUTH_test/crash/{name}", headers={"X-Auth-Token": token})
            r = h.getresponse()
            body = r.read()
            assert r.status == 200, name
            assert hashlib.md5(body).hexdigest() == md5 == r.getheader("ETag"), name
            assert r.getheader("X-Object-Meta-Seq") == meta, name
            assert listing[name]["hash"] == md5 and listing[name]["bytes"] == len(body)
        # 2. nothing partial: whatever is listed is exactly what some client sent
        for name, entry in listing.items():
            assert name in sent, name
            h.request("GET", f"/v1/AUTH_test/crash/{name}", headers={"X-Auth-Token": token})
            r = h.getresponse()
            body = r.read()
            assert hashlib.md5(body).hexdigest() == sent[name][0] == entry["hash"], name
        h.request("HEAD", "/v1/AUTH_test/crash", headers={"X-Auth-Token": token})
        r = h.getresponse()
        r.read()
        assert int(r.getheader("X-Container-Object-Count")) == len(listing)
        # 3. the interrupted uploads' temporary files are gone
        leftovers = [f for _, _, files in os.walk(root) for f in files if f.startswith(".tmp-")]
        assert leftovers == []
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
