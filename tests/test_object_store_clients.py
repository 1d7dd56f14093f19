"""The object store proven with the everyday tools learners take to real clouds: the AWS CLI
(``aws s3`` and ``aws s3api``, from PyPI), rclone and s3cmd (Debian's), and the ``swift`` CLI.
Each copies a tree up and down; the AWS CLI also overwrites a versioned object and restores
the old version, makes one object public (fetched anonymously) while another stays refused,
and presigns a URL.  A browser's form upload is in ``test_object_store_s3_features``.
"""

import filecmp
import os
import urllib.error
import urllib.request

import pytest

from cloudlab.object_store.server import ObjectStoreServer
from tests.clients import aws_cli, rclone_env, run, s3cmd_cli, swift_cli

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


# ------------------------------------------------------------------ the AWS CLI

@pytest.fixture(scope="module")
def aws(server, tmp_path_factory):
    return aws_cli(server.url, tmp_path_factory.mktemp("awshome"))


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
    env = rclone_env(server.url, tmp_path)
    run(["rclone", "mkdir", "lab:rclone-tree"], env=env)
    run(["rclone", "copy", str(tree), "lab:rclone-tree/up"], env=env)
    assert "docs/notes/한국어 노트.txt" in run(["rclone", "lsf", "-R", "lab:rclone-tree/up"], env=env)
    run(["rclone", "check", str(tree), "lab:rclone-tree/up"], env=env)
    run(["rclone", "copy", "lab:rclone-tree/up", str(tmp_path / "down")], env=env)
    assert same_tree(tree, tmp_path / "down")
    run(["rclone", "purge", "lab:rclone-tree"], env=env)


def test_s3cmd_copies_a_tree_and_makes_an_object_public(server, tree, tmp_path):
    s3cmd = s3cmd_cli(server.url, tmp_path)
    s3cmd("mb", "s3://s3cmd-tree")
    s3cmd("put", "--recursive", str(tree) + "/", "s3://s3cmd-tree/up/")
    (tmp_path / "down").mkdir()
    s3cmd("get", "--recursive", "s3://s3cmd-tree/up/", str(tmp_path / "down") + "/")
    assert same_tree(tree, tmp_path / "down")
    s3cmd("setacl", "--acl-public", "s3://s3cmd-tree/up/docs/readme.txt")
    with urllib.request.urlopen(f"{server.url}/s3cmd-tree/up/docs/readme.txt", timeout=10) as r:
        assert r.read() == b"object storage\n"
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{server.url}/s3cmd-tree/up/empty", timeout=10)
    assert exc.value.code == 403
    s3cmd("del", "--recursive", "--force", "s3://s3cmd-tree")
    s3cmd("rb", "s3://s3cmd-tree")


# ------------------------------------------------------------------ the swift CLI

def test_swift_cli_tree_and_public_container(server, tree, tmp_path):
    swift = swift_cli(server.url)
    swift("upload", "swift-tree", ".", cwd=tree)
    (tmp_path / "down").mkdir()
    swift("download", "swift-tree", cwd=tmp_path / "down")
    assert same_tree(tree, tmp_path / "down")
    url = f"{server.url}/v1/AUTH_test/swift-tree/docs/readme.txt"
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url, timeout=10)
    assert exc.value.code == 401
    swift("post", "-r", ".r:*", "swift-tree")
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"object storage\n"
    swift("delete", "swift-tree")
