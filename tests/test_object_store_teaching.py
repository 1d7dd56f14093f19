"""What lab 08 shows of the store: marked transcripts, the real swift command, the account diagram."""

import pytest

import cloudlab as cl


@pytest.fixture(scope="module")
def lab():
    lab = cl.Lab(name="teach08")
    yield lab
    lab.stop()


def test_transcript_marks_what_to_read_and_hides_routine_headers(lab):
    store = lab.object_store
    login = store.exchange("GET", store.auth_url, {"X-Auth-User": "test:tester", "X-Auth-Key": "testing"},
                           read=["X-Auth-Token"])
    auth = {"X-Auth-Token": login.header("X-Auth-Token")}
    assert f"< X-Auth-Token: {auth['X-Auth-Token']}    <- read this" in str(login)
    assert "Date:" not in str(login) and "X-Openstack-Request-Id" not in str(login)
    assert "< Date:" in login.transcript(full=True) and "Server:" not in login.transcript(full=True)
    store.exchange("PUT", store.storage_url() + "/t", auth)
    put = store.exchange("PUT", store.storage_url() + "/t/a.txt",
                         {**auth, "Content-Type": "text/plain", "X-Object-Meta-Color": "blue"}, "hi",
                         read=["> Content-Type", "X-Object-Meta-*", "< etag"])
    text = str(put).splitlines()
    assert "> Content-Type: text/plain    <- read this" in text
    assert "> X-Object-Meta-Color: blue    <- read this" in text
    assert [line for line in text if line.startswith("< Content-Type")] == ["< Content-Type: text/html; charset=utf-8"]
    assert any(line.startswith("< ETag:") and line.endswith("<- read this") for line in text)
    assert put.transcript(read=()).count("read this") == 0


def test_swift_command_runs_in_the_lab_files_folder(lab):
    store = lab.object_store
    store.files.mkdir(parents=True, exist_ok=True)
    (store.files / "up.txt").write_text("from a file\n")
    up = store.swift("upload", "cli", "up.txt")
    assert up.ok and str(up).startswith("$ swift upload cli up.txt")
    assert store.connection().get_object("cli", "up.txt")[1] == b"from a file\n"
    missing = store.swift("download", "cli", "nothing.txt", "-o", "-")
    assert not missing.ok and "not found" in str(missing)
    with pytest.raises(cl.NotFound):
        store.swift("list", user="nobody:here")


def test_account_diagram_reads_the_live_store(lab):
    swift = lab.object_store.connection()
    swift.put_container("pics")
    swift.put_object("pics", "2024/a.txt", b"a", content_type="text/plain", headers={"X-Object-Meta-Who": "minji"})
    for i in range(4):
        swift.put_object("pics", f"n{i}", b"x" * i)
    picture = cl.diagrams.object_store.account(lab.object_store, max_objects=3)
    text = str(picture)
    assert "account AUTH_test:" in text and "AUTH_test -> container pics: 5 object(s), 7 bytes" in text
    assert "pics -> object 2024/a.txt: 1 bytes, text/plain, ETag 0cc175b9…, who=minji" in text
    assert "pics -> 2 more object(s)" in text
    svg = picture.svg()
    assert "names starting 2024/" in svg and "who: minji" in svg
    assert picture.svg() == svg        # no times or ids in the labels: the same store draws the same SVG
    with pytest.raises(AttributeError):
        cl.diagrams.no_such_topic  # noqa: B018
