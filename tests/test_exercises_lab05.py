"""Lab 05's graded checks against real containers: other correct answers pass, typical mistakes fail with a hint."""

import pytest

import cloudlab as cl
from cloudlab import config
from cloudlab.teaching.exercise import run_exercise

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    lab = cl.Lab(name="ex05")
    lab.containers.create_container("web")
    yield lab
    lab.stop()


def failed(result):
    return [c for c in result.checks if not c.ok]


def test_limits_must_be_both_right(lab):
    assert failed(run_exercise("05.1", lab))[0].label == "a container named limited exists"
    wrong = lab.containers.create_container("limited", memory_mib=64, cpus=1)
    first = failed(run_exercise("05.1", lab))[0]
    assert first.label == "the kernel gives it half a CPU" and "cpus=0.5" in first.hint
    wrong.delete()
    lab.containers.create_container("limited", memory_mib=64, cpus=0.5)
    assert run_exercise("05.1", lab).passed


def test_shared_namespaces_any_collection_of_the_right_names(lab):
    assert run_exercise("05.2", lab, answer=["user", "CGROUP", "time"]).passed
    assert run_exercise("05.2", lab, answer=frozenset({"time", "user", "cgroup"})).passed
    assert "compare each pair" in failed(run_exercise("05.2", lab, answer={"user"}))[0].hint
    assert not run_exercise("05.2", lab, answer={"users"}).passed
    assert not run_exercise("05.2", lab, answer="user cgroup time").passed


def test_built_image_with_a_list_command_and_the_host_pid(lab):
    assert not run_exercise("05.3", lab).passed
    lab.containers.build_image("greeter", command=["sh", "-c", "echo hello from $(hostname)"])
    assert failed(run_exercise("05.3", lab))[0].label == "a container named greet exists"
    lab.containers.create_container("greet", image="greeter")
    assert run_exercise("05.3", lab).passed
    web = lab.containers.get_container("web")
    assert run_exercise("05.4", lab, answer=web.pid).passed
    assert not run_exercise("05.4", lab, answer=1).passed
