"""The object store proven with the everyday tools learners take to real clouds: the AWS CLI
(``aws s3`` and ``aws s3api``, from PyPI), rclone and s3cmd (Debian's), and the ``swift`` CLI.
Each copies a tree up and down; the AWS CLI also overwrites a versioned object and restores
the old version, makes one object public (fetched anonymously) while another stays refused,
and presigns a URL.  A browser's form upload is in ``test_object_store_s3_features``.
"""

import filecmp
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cloudlab.object_store.server import ObjectStoreServer

BIN = Path(sys.executable).parent
AWS = str(BIN / "aws")
SWIFT = str(BIN / "swift")
USERS = {"test:tester": "testing"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ObjectStoreServer(tmp_path_factory.mktemp("clients") / "root", users=USERS).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A small tree of files: nested folders, an empty file, a name with spaces and Korean, 3 MiB of bytes."""
    root = tmp_path_factory.mktemp("tree")
    (root / "docs" / "notes").mkdir(parents=True)
    (root / "docs" / "readme.txt").write_text("object storage\n")
    (root / "docs" / "notes" / "한국어 노트.txt").write_text("오브젝트 스토리지\n")
    (root / "empty").write_bytes(b"")
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    return root


def same_tree(a, b):
    cmp = filecmp.dircmp(a, b)

    def walk(c):
        assert not c.left_only and not c.right_only and not c.diff_files, (c.left_only, c.right_only, c.diff_files)
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        assert not mismatch and not errors
        for sub in c.subdirs.values():
            walk(sub)
    walk(cmp)
    return True


def run(cmd, env=None, cwd=None):
    assert shutil.which(cmd[0]), f"{cmd[0]} is missing: `make test` installs it (Makefile SYSTEM_PACKAGES)"
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
    assert result.returncode == 0, f"{cmd[0]} {cmd[1:3]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


# ------------------------------------------------------------------ the AWS CLI

@pytest.fixture(scope="module")
def aws(server, tmp_path_factory):
    home = tmp_path_factory.mktemp("awshome")
    config = home / "config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "AWS_CONFIG_FILE": str(config),
           "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"), "AWS_ACCESS_KEY_ID": "test:tester",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}

    def call(*args, parse=False):
        out = run([AWS, "--endpoint-url", server.url, *args], env=env)
        return json.loads(out) if parse and out.strip() else out
    return call


def test_aws_s3_copies_a_tree_up_and_down(aws, tree, tmp_path):
    aws("s3", "mb", "s3://aws-tree")
    aws("s3", "sync", str(tree), "s3://aws-tree/up")
    listed = aws("s3", "ls", "--recursive", "s3://aws-tree/up/")
    assert "up/docs/notes/한국어 노트.txt" in listed and "up/big.bin" in listed
    aws("s3", "sync", "s3://aws-tree/up", str(tmp_path / "down"))
    (tmp_path / "down" / "empty").touch()   # `aws s3 sync` keeps empty files; make the check independent of that
    assert same_tree(tree, tmp_path / "down")
    aws("s3", "cp", str(tree / "big.bin"), "s3://aws-tree/copy.bin")
    aws("s3", "cp", "s3://aws-tree/copy.bin", str(tmp_path / "copy.bin"))
    assert (tmp_path / "copy.bin").read_bytes() == (tree / "big.bin").read_bytes()
    aws("s3", "rb", "--force", "s3://aws-tree")
    assert "aws-tree" not in aws("s3", "ls")


def test_aws_s3api_versioned_overwrite_and_restore(aws, tmp_path):
    aws("s3api", "create-bucket", "--bucket", "aws-versions")
    aws("s3api", "put-bucket-versioning", "--bucket", "aws-versions",
        "--versioning-configuration", "Status=Enabled")
    assert aws("s3api", "get-bucket-versioning", "--bucket", "aws-versions", parse=True)["Status"] == "Enabled"
    for text in ("draft one", "draft two"):
        (tmp_path / "doc.txt").write_text(text)
        aws("s3api", "put-object", "--bucket", "aws-versions", "--key", "doc.txt", "--body", str(tmp_path / "doc.txt"))
    versions = aws("s3api", "list-object-versions", "--bucket", "aws-versions", parse=True)["Versions"]
    assert [v["IsLatest"] for v in versions] == [True, False]
    old = versions[1]["VersionId"]
    aws("s3api", "copy-object", "--bucket", "aws-versions", "--key", "doc.txt",
        "--copy-source", f"aws-versions/doc.txt?versionId={old}")
    aws("s3api", "get-object", "--bucket", "aws-versions", "--key", "doc.txt", str(tmp_path / "got.txt"))
    assert (tmp_path / "got.txt").read_text() == "draft one"
    for v in aws("s3api", "list-object-versions", "--bucket", "aws-versions", parse=True)["Versions"]:
        aws("s3api", "delete-object", "--bucket", "aws-versions", "--key", v["Key"], "--version-id", v["VersionId"])
    aws("s3api", "delete-bucket", "--bucket", "aws-versions")


def test_aws_public_object_anonymous_and_presigned(server, aws, tmp_path):
    aws("s3api", "create-bucket", "--bucket", "aws-public")
    (tmp_path / "hello.txt").write_text("hello, anyone")
    aws("s3api", "put-object", "--bucket", "aws-public", "--key", "public.txt", "--body", str(tmp_path / "hello.txt"),
        "--acl", "public-read")
    aws("s3api", "put-object", "--bucket", "aws-public", "--key", "private.txt", "--body", str(tmp_path / "hello.txt"))
    with urllib.request.urlopen(f"{server.url}/aws-public/public.txt", timeout=10) as r:
        assert r.read() == b"hello, anyone"
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{server.url}/aws-public/private.txt", timeout=10)
    assert exc.value.code == 403 and b"<Code>AccessDenied</Code>" in exc.value.read()
    # the AWS CLI v1 presigns with Signature Version 2 unless told otherwise: refused, saying so
    old_style = aws("s3", "presign", "s3://aws-public/private.txt", "--expires-in", "60").strip()
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(old_style, timeout=10)
    assert exc.value.code == 400 and b"Signature Version 2" in exc.value.read()
    aws("configure", "set", "default.s3.signature_version", "s3v4")
    url = aws("s3", "presign", "s3://aws-public/private.txt", "--expires-in", "60").strip()
    assert "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"hello, anyone"
    aws("s3", "rb", "--force", "s3://aws-public")


# ------------------------------------------------------------------ rclone and s3cmd (Debian)

def test_rclone_copies_a_tree_up_and_down(server, tree, tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
           "RCLONE_CONFIG_LAB_TYPE": "s3", "RCLONE_CONFIG_LAB_PROVIDER": "Other",
           "RCLONE_CONFIG_LAB_ACCESS_KEY_ID": "test:tester", "RCLONE_CONFIG_LAB_SECRET_ACCESS_KEY": "testing",
           "RCLONE_CONFIG_LAB_ENDPOINT": server.url, "RCLONE_CONFIG_LAB_FORCE_PATH_STYLE": "true",
           "RCLONE_CONFIG_LAB_REGION": "us-east-1"}
    run(["rclone", "mkdir", "lab:rclone-tree"], env=env)
    run(["rclone", "copy", str(tree), "lab:rclone-tree/up"], env=env)
    assert "docs/notes/한국어 노트.txt" in run(["rclone", "lsf", "-R", "lab:rclone-tree/up"], env=env)
    run(["rclone", "check", str(tree), "lab:rclone-tree/up"], env=env)
    run(["rclone", "copy", "lab:rclone-tree/up", str(tmp_path / "down")], env=env)
    assert same_tree(tree, tmp_path / "down")
    run(["rclone", "purge", "lab:rclone-tree"], env=env)


def test_s3cmd_copies_a_tree_and_makes_an_object_public(server, tree, tmp_path):
    host = server.url.removeprefix("http://")
    config = tmp_path / "s3cfg"
    config.write_text(f"[default]\naccess_key = test:tester\nsecret_key = testing\nhost_base = {host}\n"
                      f"host_bucket = {host}\nuse_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n")
    s3cmd = ["s3cmd", "-c", str(config)]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    run([*s3cmd, "mb", "s3://s3cmd-tree"], env=env)
    run([*s3cmd, "put", "--recursive", str(tree) + "/", "s3://s3cmd-tree/up/"], env=env)
    (tmp_path / "down").mkdir()
    run([*s3cmd, "get", "--recursive", "s3://s3cmd-tree/up/", str(tmp_path / "down") + "/"], env=env)
    assert same_tree(tree, tmp_path / "down")
    run([*s3cmd, "setacl", "--acl-public", "s3://s3cmd-tree/up/docs/readme.txt"], env=env)
    with urllib.request.urlopen(f"{server.url}/s3cmd-tree/up/docs/readme.txt", timeout=10) as r:
        assert r.read() == b"object storage\n"
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{server.url}/s3cmd-tree/up/empty", timeout=10)
    assert exc.value.code == 403
    run([*s3cmd, "del", "--recursive", "--force", "s3://s3cmd-tree"], env=env)
    run([*s3cmd, "rb", "s3://s3cmd-tree"], env=env)


# ------------------------------------------------------------------ the swift CLI

def test_swift_cli_tree_and_public_container(server, tree, tmp_path):
    auth = ["-A", server.url + "/auth/v1.0", "-U", "test:tester", "-K", "testing"]
    run([SWIFT, *auth, "upload", "swift-tree", "."], cwd=tree)
    (tmp_path / "down").mkdir()
    run([SWIFT, *auth, "download", "swift-tree"], cwd=tmp_path / "down")
    assert same_tree(tree, tmp_path / "down")
    url = f"{server.url}/v1/AUTH_test/swift-tree/docs/readme.txt"
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url, timeout=10)
    assert exc.value.code == 401
    run([SWIFT, *auth, "post", "-r", ".r:*", "swift-tree"])
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"object storage\n"
    run([SWIFT, *auth, "delete", "swift-tree"])
