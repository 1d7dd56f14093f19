"""Lab 12 (architectures): the graded exercises' checks, read from the live three-node lab.

Each check reads the lab as it runs: where the compute service finds each server (the
libvirtd of which node runs its domain), the nodes' addresses, a mark written into a
guest's memory-backed /tmp (which only a guest that was never rebooted still has), and
what the scheduler's filters leave free on each compute node now.
"""

from ..exercise import Check, exercise


def _server(lab, name):
    try:
        return lab.compute.get_server(name)
    except Exception:
        return None


@exercise("12.1", title="Beside web1", points=2)
def beside_web1(lab, answer=None):
    """Server ex1 runs on web1's compute node; answer is that node's management address."""
    ex1, web1 = _server(lab, "ex1"), _server(lab, "web1")
    yield Check("a server named ex1 exists", ex1 is not None,
                hint="lab.compute.create_server('ex1', host=...)")
    yield Check("ex1 is ACTIVE", ex1.status == "ACTIVE", hint=f"it is {ex1.status}; ex1.wait()")
    yield Check("ex1 runs on the same compute node as web1", ex1.host == web1.host,
                hint=f"ex1 is on {ex1.host}, web1 on {web1.host}; host= chooses the node")
    yield Check("answer is a string", isinstance(answer, str), hint='answer = "10.214..."')
    yield Check("answer is that node's address on the management network",
                answer.strip() == lab.nodes[web1.host].address,
                hint="lab.nodes[name].address; the name is server.host")


@exercise("12.2", title="Move web2 without stopping it", points=2)
def move_web2(lab):
    """web2 runs on compute1 now, ACTIVE, and is the same running guest (its /tmp mark survived)."""
    web2 = _server(lab, "web2")
    yield Check("web2 exists", web2 is not None, hint="the lab made web2 at the start; run the cells above")
    yield Check("web2 runs on compute1", web2.host == "compute1",
                hint=f"it is on {web2.host}; live-migrate it")
    yield Check("web2 is ACTIVE", web2.status == "ACTIVE", hint=f"it is {web2.status}")
    mark = web2.run("cat /tmp/lab12-mark 2>/dev/null").stdout.strip()
    yield Check("web2 was never rebooted (the mark in its /tmp, which lives in RAM, is still there)",
                mark == "written on compute2",
                hint="a deleted and re-created, or restarted, server starts with an empty /tmp: "
                     "live migration moves the running guest, memory and all")


def tiny_capacity(lab):
    """How many more m1.tiny servers the scheduler can place now, over every compute node that is up."""
    tiny = lab.compute.get_flavor("m1.tiny")
    total = 0
    for row in lab.compute.hypervisors():
        if row["state"] != "up":
            continue
        free_vcpus = row["vcpus"] - row["used_vcpus"]
        total += min(row["free_ram_mib"] // tiny.ram_mib, free_vcpus // tiny.vcpus)
    return total


@exercise("12.3", title="What the filters still allow", points=2)
def capacity(lab, answer=None):
    """answer is how many more m1.tiny servers fit now, by the RAM and vCPU filters of every compute node."""
    yield Check("answer is a whole number", isinstance(answer, int) and not isinstance(answer, bool),
                hint="answer = 0  (a count of servers)")
    expected = tiny_capacity(lab)
    yield Check("answer is what the filters leave on all compute nodes together", answer == expected,
                hint="per node: the smaller of free MiB // the flavor's MiB and free vCPUs // its vCPUs; "
                     "then add the nodes (lab.compute.hypervisors())")
