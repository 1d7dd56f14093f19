"""Public arguments of the wrong type: an InvalidInput that names the argument and what it accepts.

Without the checks, Python's own errors surface from deep inside (``TypeError:
unhashable type: 'dict'`` for ``flavor={"ram": 1}``), naming neither the argument nor
what would have worked.  Runs on libvirt's test driver (no guest boots): every call
here fails before anything is created, and the test checks nothing was.
"""

import pytest

import cloudlab as cl
from cloudlab import compute as compute_mod
from tests.test_compute_api import NODE_XML, ready

WRONG = {"a dict": {"ram": 1}, "a list": [1], "a set": {1}, "bytes": b"x", "an object": object()}


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path / "home"))
    return cl.Lab(name="argtest")


@pytest.fixture
def compute(lab, tmp_path):
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    host = compute_mod.LibvirtHost(f"test://{node}")
    service = compute_mod.Compute(lab, host=host).start()
    yield service
    service.stop()
    host.stop()


@pytest.fixture
def server(compute):
    server = compute.create_server("arg1", wait=False)
    ready(server)
    return server


def _refused(call, argument):
    with pytest.raises(cl.InvalidInput) as err:
        call()
    assert argument in err.value.message, err.value.message
    assert err.value.fix, "the error says what the argument accepts"
    return err.value


@pytest.mark.parametrize("value", WRONG.values(), ids=WRONG.keys())
def test_create_server_flavor_of_the_wrong_type(compute, lab, value):
    err = _refused(lambda: compute.create_server("x1", flavor=value), "flavor")
    assert "m1.tiny" in err.fix
    assert compute.list_servers() == [] and not list(lab.home.glob(f"{lab.prefix}x1*"))


@pytest.mark.parametrize("argument, value", [
    ("image", {"name": "busybox"}), ("image", 3), ("network", 5), ("network", ["a"]), ("profile", {"virtio": 1}),
    ("timeout", "60"), ("timeout", -1), ("timeout", float("nan")), ("wait", "yes"), ("kernel_args", ["quiet"]),
])
def test_create_server_other_arguments_of_the_wrong_type(compute, lab, argument, value):
    _refused(lambda: compute.create_server("x1", **{argument: value}), argument)
    assert compute.list_servers() == [] and not list(lab.home.glob(f"{lab.prefix}x1*"))


@pytest.mark.parametrize("value", WRONG.values(), ids=WRONG.keys())
def test_lookups_of_the_wrong_type(compute, value):
    _refused(lambda: compute.get_flavor(value), "flavor")
    _refused(lambda: compute.delete_flavor(value), "flavor")
    _refused(lambda: compute.get_server(value), "server")
    _refused(lambda: compute.delete_server(value), "server")
    _refused(lambda: compute.images.get_image(value), "image")


def test_server_methods_with_arguments_of_the_wrong_type(compute, server):
    _refused(lambda: compute.wait_for_server(server, status="RUNNING"), "status")
    _refused(lambda: compute.wait_for_server(server, timeout="5"), "timeout")
    _refused(lambda: server.wait(timeout=[1]), "timeout")
    _refused(lambda: server.wait_for_address(timeout="30"), "timeout")
    _refused(lambda: server.console_log(lines="10"), "lines")
    _refused(lambda: server.stop(timeout={}), "timeout")
    _refused(lambda: server.reboot(hard="no"), "hard")
    _refused(lambda: server.resize({"ram": 256}), "flavor")
    _refused(lambda: compute.resize_server(server, "m1.small", timeout="x"), "timeout")
    _refused(lambda: server.run(42), "command")
    _refused(lambda: server.run("true", timeout="5"), "timeout")
    _refused(lambda: server.run("cat", input=7), "input")
    assert server.status == "ACTIVE"      # nothing happened to it


def test_create_flavor_arguments(compute):
    _refused(lambda: compute.create_flavor({"n": 1}, 1, 128, 1), "name")
    _refused(lambda: compute.create_flavor("m1.x", "1", 128, 1), "vcpus")
    _refused(lambda: compute.create_flavor("m1.x", 1, 128.5, 1), "ram_mib")


def test_lab_arguments():
    _refused(lambda: cl.Lab(name=5), "name")
    _refused(lambda: cl.Lab(name=None), "name")
    _refused(lambda: cl.Lab(topology="all-in-one"), "topology")
