"""An OpenStack API as a node's process (cloudlab.api.node_service): its command line, journal and queued records.

The three-node lab's own tests (tests/test_architectures.py) run Glance's API on the
controller node; these run the same command on this machine's loopback, without a lab.
"""

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest
import requests

from cloudlab.api.image import QueuedImages
from cloudlab.api.node_service import JournalFile, JournalReader
from cloudlab.process import stop_process

AUTH_URL = "http://127.0.0.1:9/keystone-as-clients-see-it"


def _command(tmp_path, fds, parent=None, home=None):
    command = [sys.executable, "-m", "cloudlab", "api-service", "image", "--base", "http://127.0.0.1:1",
               "--keystone-url", "http://127.0.0.1:9", "--auth-url", AUTH_URL, "--admin-project", "a" * 32,
               "--lab-home", str(home or tmp_path), "--lab-prefix", "cloudlab-t-",
               "--journal", str(tmp_path / "journal.jsonl")]
    for fd in fds:
        command += ["--fd", str(fd)]
    if parent is not None:
        command += ["--parent-fd", str(parent)]
    return command


def _env(tmp_path, password="secret"):
    env = {**os.environ, "CLOUDLAB_HOME": str(tmp_path / "home")}
    env.pop("CLOUDLAB_KEYSTONE_PASSWORD", None)
    if password:
        env["CLOUDLAB_KEYSTONE_PASSWORD"] = password
    return env


def _run(command, env, pass_fds=()):
    return subprocess.run(command, env=env, capture_output=True, text=True, pass_fds=pass_fds, timeout=60)


def test_bad_options_are_refused_with_their_fix(tmp_path):
    # file descriptor 0 is no listening socket
    result = _run(_command(tmp_path, [0]), _env(tmp_path))
    assert result.returncode == 2 and "--fd 0 is not a" in result.stderr, result.stderr
    with socket.create_server(("127.0.0.1", 0)) as sock:
        fd = sock.fileno()
        result = _run(_command(tmp_path, [fd, fd]), _env(tmp_path), pass_fds=[fd])
        assert result.returncode == 2 and "names one socket twice" in result.stderr
        result = _run(_command(tmp_path, [fd], home=tmp_path / "missing"), _env(tmp_path), pass_fds=[fd])
        assert result.returncode == 2 and "is not a folder" in result.stderr
        # the service user's password comes through the environment, never the command line
        result = _run(_command(tmp_path, [fd]), _env(tmp_path, password=None), pass_fds=[fd])
        assert result.returncode == 2 and "CLOUDLAB_KEYSTONE_PASSWORD" in result.stderr, result.stderr
        result = _run(_command(tmp_path, [fd], parent=fd), _env(tmp_path), pass_fds=[fd])
        assert result.returncode == 2 and f"--parent-fd {fd} is not a pipe" in result.stderr


def test_it_serves_its_socket_checks_tokens_and_ends_with_its_parent(tmp_path):
    sock = socket.create_server(("127.0.0.1", 0))
    read, write = os.pipe()
    proc = subprocess.Popen(_command(tmp_path, [sock.fileno()], parent=read), env=_env(tmp_path),
                            pass_fds=[sock.fileno(), read], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    os.close(read)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()      # the process has its own copy: the socket is its now
    try:
        # a request waits in the socket's queue until the process serves it
        versions = requests.get(f"{url}/versions", timeout=30)
        assert versions.status_code == 200 and versions.json()["versions"][0]["id"] == "v2.17"
        # no token: 401, naming Keystone as the clients reach it (keystonemiddleware's answer)
        refused = requests.get(f"{url}/v2/images", timeout=10)
        assert refused.status_code == 401 and AUTH_URL in refused.headers["WWW-Authenticate"]
        lines = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
        assert [(e["service"], e["method"], e["path"], e["status"]) for e in lines] == \
            [("glance", "GET", "/versions", 200), ("glance", "GET", "/v2/images", 401)]
        # the lab's process ends: the write end of the pipe closes, and the process stops
        os.close(write)
        write = None
        assert proc.wait(timeout=15) == 0
        assert "glance-api listening on" in proc.stdout.read()
    finally:
        if write is not None:
            os.close(write)
        stop_process(proc)


def test_the_journal_reader_takes_whole_lines_only(tmp_path):
    path = tmp_path / "journal.jsonl"
    reader = JournalReader(path)
    assert reader.new_entries() == []           # no file yet
    JournalFile(path).append({"n": 1})
    with open(path, "ab") as out:
        out.write(b'{"n": 2')                   # a line still being written
    assert reader.new_entries() == [{"n": 1}]
    with open(path, "ab") as out:
        out.write(b"}\n")
    assert reader.new_entries() == [{"n": 2}]
    assert reader.new_entries() == []


def test_queued_records_are_shared_through_their_files(tmp_path):
    ident = str(uuid.uuid4())
    writer, reader = QueuedImages(tmp_path / "queue"), QueuedImages(tmp_path / "queue")
    assert reader.values() == [] and reader.pop(ident) is None
    writer.put({"id": ident, "name": "one", "status": "queued"})
    time.sleep(0.05)
    other = str(uuid.uuid4())
    writer.put({"id": other, "name": "two", "status": "queued"})
    assert [r["name"] for r in reader.values()] == ["one", "two"]
    writer.put({"id": ident, "name": "one", "status": "saving"})      # replaced whole
    assert {r["name"]: r["status"] for r in reader.values()} == {"one": "saving", "two": "queued"}
    assert reader.pop(ident)["status"] == "saving" and reader.pop(ident) is None
    assert not list((tmp_path / "queue").glob(".*"))        # no temporary file left
    with pytest.raises(ValueError):
        writer.put({"id": "../escape", "name": "x"})         # an id is a UUID, never a path
    writer.clear()
    assert not (tmp_path / "queue").exists()
