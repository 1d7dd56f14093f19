"""Unit tests of the package's core: errors, settings, topologies, the Lab object, self-checks."""

import threading
import time

import pytest

import cloudlab as cl
from cloudlab import config
from cloudlab.teaching.check import evaluate


def test_error_carries_fix_in_message():
    err = cl.MissingPrerequisite("libvirtd is not running", fix="python -m cloudlab host up")
    assert err.fix == "python -m cloudlab host up"
    assert "libvirtd is not running" in str(err)
    assert "fix: python -m cloudlab host up" in str(err)
    assert isinstance(err, cl.CloudlabError)


def test_error_kinds_are_also_builtin_kinds():
    # learners' code that catches LookupError or ValueError keeps working
    assert issubclass(cl.NotFound, LookupError)
    assert issubclass(cl.InvalidInput, ValueError)
    assert issubclass(cl.ResourceTimeout, TimeoutError)


def test_settings_follow_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLOUDLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLOUDLAB_NETNS", "ns1")
    monkeypatch.setenv("CLOUDLAB_PREFIX", "t-")
    assert config.home() == tmp_path / "home" and config.home().is_dir()
    assert config.cache() == tmp_path / "cache" and config.cache().is_dir()
    assert config.netns() == "ns1"
    assert config.prefix() == "t-"
    monkeypatch.delenv("CLOUDLAB_NETNS")
    monkeypatch.delenv("CLOUDLAB_PREFIX")
    assert config.netns() is None
    assert config.prefix() == "cloudlab-"


def test_a_lab_under_another_prefix_has_a_folder_of_its_own(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path))
    assert cl.Lab(name="lab03").home == tmp_path / "lab03"
    monkeypatch.setenv("CLOUDLAB_PREFIX", "cloudlab-g1a2b-")     # as the grader runs a copy of lab 03
    graded = cl.Lab(name="lab03")
    assert graded.home == tmp_path / "g1a2b-lab03" and graded.prefix == "cloudlab-g1a2b-lab03-"
    assert config.folder_tag("other-") == "other-" and config.folder_tag("cloudlab-") == ""


@pytest.mark.parametrize("layout, nodes", [
    (cl.AllInOne, ["controller"]),
    (cl.TwoNode, ["controller", "compute1"]),
    (cl.ThreeNode, ["controller", "compute1", "block1"]),
])
def test_layouts_place_every_role(layout, nodes):
    topo = layout()
    assert [n.name for n in topo.nodes] == nodes
    for role in ("controller", "compute", "storage"):
        assert topo.nodes_with(role), role
    assert topo.node_for("controller").name == "controller"
    assert topo[nodes[-1]].name == nodes[-1]


def test_custom_topology_validation():
    topo = cl.Topology(name="mine", nodes=[])
    with pytest.raises(cl.InvalidInput, match="unknown role"):
        topo.add_node("n1", "gpu")
    topo.add_node("n1", "controller", "compute")
    with pytest.raises(cl.InvalidInput, match="already in"):
        topo.add_node("n1", "storage")
    with pytest.raises(cl.InvalidInput, match="has no storage node"):
        cl.Lab(topo)
    topo.add_node("n2", "storage")
    assert cl.Lab(topo).topology.node_for("storage").name == "n2"


def test_lab_rejects_bad_arguments():
    with pytest.raises(cl.InvalidInput, match="needs a topology"):
        cl.Lab("all-in-one")
    with pytest.raises(cl.InvalidInput, match="not usable"):
        cl.Lab(name="bad name!")
    lab = cl.Lab()
    with pytest.raises(cl.InvalidInput, match="has no service"):
        lab.service("teleporter")
    with pytest.raises(AttributeError):
        lab.teleporter  # noqa: B018


def test_lab_prefix_and_home(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path))
    lab = cl.Lab(name="demo")
    assert lab.prefix == "cloudlab-demo-"
    assert lab.home == tmp_path / "demo" and lab.home.is_dir()
    with lab as running:
        assert running is lab and lab.started
    assert not lab.started


def test_lab_starts_services_once_and_stops_them_in_reverse(monkeypatch):
    events = []

    class Fake:
        def __init__(self, lab):
            self.name = f"svc{len(events)}"

        def start(self):
            events.append(("start", self.name))

        def stop(self):
            events.append(("stop", self.name))

    import cloudlab.lab as lab_module
    monkeypatch.setitem(lab_module.SERVICES, "alpha", "tests.test_core:Fake")
    monkeypatch.setitem(lab_module.SERVICES, "beta", "tests.test_core:Fake")
    globals()["Fake"] = Fake
    lab = cl.Lab()
    first = lab.alpha
    assert lab.alpha is first  # started once, then reused
    lab.beta  # noqa: B018
    lab.stop()
    assert events == [("start", "svc0"), ("start", "svc1"), ("stop", "svc1"), ("stop", "svc0")]


class Watched:
    """A service whose own thread holds the service's lock while it asks the lab for another service."""

    def __init__(self, lab):
        self.lab, self.lock, self.asked = lab, threading.Lock(), threading.Event()
        self.answers = []

    def start(self):
        pass

    def watch(self):
        with self.lock:
            self.asked.set()
            time.sleep(0.2)                 # stop() is called meanwhile
            for attribute in ("alpha", "gamma"):
                try:
                    self.answers.append(type(self.lab.service(attribute)).__name__)
                except cl.Conflict:
                    self.answers.append("Conflict")

    def stop(self):
        with self.lock:                     # as a service's stop takes its own lock
            pass


def test_stopping_does_not_deadlock_with_a_service_thread_and_starts_nothing_anew(monkeypatch):
    import cloudlab.lab as lab_module
    globals()["Fake"] = type("Fake", (), {"__init__": lambda self, lab: None, "start": lambda self: None,
                                          "stop": lambda self: None})
    globals()["Watched"] = Watched
    monkeypatch.setitem(lab_module.SERVICES, "alpha", "tests.test_core:Fake")
    monkeypatch.setitem(lab_module.SERVICES, "gamma", "tests.test_core:Fake")
    monkeypatch.setitem(lab_module.SERVICES, "watched", "tests.test_core:Watched")
    lab = cl.Lab()
    lab.alpha  # noqa: B018 - older than the watched service: it stops after it
    watched = lab.watched
    thread = threading.Thread(target=watched.watch, daemon=True)
    thread.start()
    watched.asked.wait(5)
    stopper = threading.Thread(target=lab.stop, daemon=True)
    stopper.start()
    stopper.join(10)
    thread.join(10)
    assert not stopper.is_alive() and not thread.is_alive(), "lab.stop() and the service's thread deadlocked"
    # the older service is still found while the newer one stops; a missing one is not started
    assert watched.answers == ["Fake", "Conflict"]
    assert lab.services == [] and not lab.started
    assert type(lab.gamma).__name__ == "Fake"        # once stopped, the lab starts services again


def test_check_prints_pass_and_fail(capsys):
    assert cl.check("two is even", 2 % 2 == 0) is True
    assert cl.check("three is even", lambda: 3 % 2 == 0, hint="look at the remainder") is False
    out = capsys.readouterr().out.splitlines()
    assert out == ["\u2714 two is even", "\u2718 three is even: look at the remainder"]


def test_check_reports_exceptions_without_traceback(capsys):
    def boom():
        raise cl.NotFound("no server named 'web9'")
    ok, detail = evaluate(boom)
    assert not ok and detail == "NotFound: no server named 'web9'"
    with cl.Checklist("demo") as checks:
        checks.check("server exists", boom)
        checks.check("sky is up", True)
    out = capsys.readouterr().out
    assert "\u2718 server exists: NotFound: no server named 'web9'" in out
    assert out.strip().endswith("demo: 1 of 2 checks passed")
    assert checks.failed == 1 and not checks.ok
