"""Lab 05 (containers): limits, namespaces, images and the host's view of a container.

Every check reads the live lab through the container service: the containers
themselves (``podman inspect``), their processes' namespaces and cgroup limits
in the host's kernel, their logs, and the lab's images.
"""

import time

from ...errors import CloudlabError
from ..exercise import Check, exercise

NAMESPACE_KINDS = ("pid", "mnt", "net", "uts", "ipc", "user", "cgroup", "time")


def _container(lab, name):
    try:
        return lab.containers.get_container(name)
    except CloudlabError:
        return None


@exercise("05.1", title="Limit a container", points=2)
def limit_a_container(lab):
    """A running container ``limited`` with a 64 MiB memory limit and half a CPU."""
    c = _container(lab, "limited")
    yield Check("a container named limited exists", c is not None, hint='lab.containers.create_container("limited", ...)')
    yield Check("it is RUNNING", c.status == "RUNNING", hint="its command must keep running: leave the default")
    limits = c.cgroup_limits()
    yield Check("the kernel caps its memory at 64 MiB", limits["memory_bytes"] == 64 * 2**20,
                hint="memory_mib=64")
    yield Check("the kernel gives it half a CPU", limits["cpus"] == 0.5, hint="cpus=0.5")


@exercise("05.2", title="What does a container share with the host?", points=2)
def shared_namespaces(lab, answer=None):
    """``answer``: the namespace kinds the container ``web`` shares with the host."""
    kinds = None
    if isinstance(answer, (set, list, tuple, frozenset)) and all(isinstance(k, str) for k in answer):
        kinds = {k.strip().lower() for k in answer}
    yield Check("answer is a set of namespace names", kinds is not None,
                hint='answer = {"...", ...}  with names such as "pid", "net", "user"')
    yield Check("they are namespace kinds the kernel has", kinds <= set(NAMESPACE_KINDS),
                hint=f"the kinds are {', '.join(NAMESPACE_KINDS)}")
    web = _container(lab, "web")
    yield Check("container web runs", web is not None and web.status == "RUNNING", hint="run section 2 again")
    shared = {kind for kind, (_, _, same) in web.namespaces().items() if same}
    yield Check("they are exactly the kinds web shares with the host", kinds == shared,
                hint="compare each pair of inodes in web.namespaces()")


@exercise("05.3", title="Build an image and run it", points=2)
def build_and_run(lab):
    """An image ``greeter`` whose command prints ``hello from <hostname>``, run as container ``greet``."""
    images = {i.name for i in lab.containers.list_images()}
    yield Check("an image named greeter exists", "greeter" in images, hint='containers.build_image("greeter", ...)')
    c = _container(lab, "greet")
    yield Check("a container named greet exists", c is not None,
                hint='containers.create_container("greet", image="greeter")')
    yield Check("greet was made from greeter", c.image == "greeter", hint='image="greeter"')
    deadline = time.monotonic() + 10       # its command may still be starting
    while "hello from greet" not in c.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    yield Check("its output says hello from greet", "hello from greet" in c.logs(),
                hint="the command: echo hello from $(hostname)")


@exercise("05.4", title="PID 1 inside, which PID outside?", points=1)
def pid_outside(lab, answer=None):
    """``answer``: the host's PID of container ``web``'s PID 1."""
    yield Check("answer is a whole number", isinstance(answer, int) and not isinstance(answer, bool),
                hint="answer = <a number>")
    web = _container(lab, "web")
    yield Check("container web runs", web is not None and web.status == "RUNNING", hint="run section 2 again")
    yield Check("it is the PID the host's kernel gives web's first process", answer == web.pid,
                hint="inside, that process is PID 1; the engine knows its host PID")
    yield Check("and it is not 1", answer != 1, hint="PID 1 is the container's own numbering")
