"""Lab 04 (hypervisors): what a fully emulated and a para-virtualized guest see, and what the host sees.

Every check reads the live lab: the guests' own view of their hardware (through
the agent), their QEMU processes on the host, and the measured results the
learner passes in.
"""

from ...errors import CloudlabError
from ..exercise import Check, exercise


def _server(lab, name):
    try:
        return lab.compute.get_server(name)
    except CloudlabError:
        return None


def _disk_name(answer):
    if not isinstance(answer, str):
        return None
    return answer.strip().removeprefix("/dev/")


@exercise("04.1", title="The guest names its disk", points=1)
def guest_names_its_disk(lab, answer=None):
    """``answer``: the name the *emulated* server's guest gives its disk."""
    yield Check("answer is a device name (text)", isinstance(answer, str) and answer.strip(),
                hint='answer = "..."  (a device name, as under /dev)')
    server = _server(lab, "emulated")
    yield Check("the lab still has its server 'emulated'", server is not None and server.status == "ACTIVE",
                hint="run the cells of section 2 again")
    disks = server.guest_view().disks
    yield Check("it is the disk the emulated guest sees", _disk_name(answer) in disks,
                hint="the domain XML says hda, but the guest's kernel names the disk itself")
    yield Check("it is not the name the request (domain XML) gave", _disk_name(answer) != "hda",
                hint="hda is libvirt's target name; the guest's driver (ata_piix, libata) chose another")


@exercise("04.2", title="Boot a para-virtualized server with two vCPUs", points=2)
def boot_pv2(lab):
    """A server ``pv2``: profile virtio, two vCPUs, running."""
    server = _server(lab, "pv2")
    yield Check("a server named pv2 exists", server is not None, hint='lab.compute.create_server("pv2", ...)')
    yield Check("it is ACTIVE", server.status == "ACTIVE", hint="wait for it, or start it")
    yield Check("it has the virtio profile", server.profile == "virtio", hint='profile="virtio"')
    yield Check("it has two vCPUs", server.flavor.vcpus == 2, hint="choose a flavor with 2 vCPUs (list_flavors())")
    view = server.guest_view()
    yield Check("its guest sees a virtio disk and NIC", view.disks == ("vda",) and
                view.nics.get("eth0") == "virtio_net", hint="the virtio profile gives vda and virtio_net")


@exercise("04.3", title="Count the vCPU threads", points=1)
def count_vcpu_threads(lab, answer=None):
    """``answer``: how many vCPU threads pv2's QEMU process runs."""
    yield Check("answer is a whole number", isinstance(answer, int) and not isinstance(answer, bool),
                hint="answer = <a number>")
    server = _server(lab, "pv2")
    yield Check("server pv2 runs (exercise 04.2)", server is not None and server.status == "ACTIVE",
                hint="do exercise 04.2 first")
    process = server.qemu_process()
    yield Check("it equals the vCPU threads of pv2's QEMU process", answer == len(process.vcpu_threads),
                hint="pv2.qemu_process().vcpu_threads")
    yield Check("and the vCPUs pv2's guest counts", answer == int(server.run("nproc").stdout.strip()),
                hint="one host thread per virtual CPU", hidden=True)


@exercise("04.4", title="How much faster is the paravirtual NIC?", points=2)
def net_ratio(lab, answer=None, results=None):
    """``answer``: virtio-net's throughput to the host over e1000's, from the measured ``results``."""
    yield Check("answer is a number", isinstance(answer, (int, float)) and not isinstance(answer, bool),
                hint="answer = <a number>, e.g. from results.get(...) / results.get(...)")
    yield Check("the measured results are given", results is not None and hasattr(results, "ratio"),
                hint="pass results=results to check_exercise")
    virtio = [t.label for t, _ in results.rows if t.profile == "virtio" and t.available]
    emulated = [t.label for t, _ in results.rows if t.profile == "emulated" and t.available]
    yield Check("the results have a virtio and an emulated server", virtio and emulated,
                hint="run the measurement cell of section 5 again")
    # any accelerator the host has, as long as both rows use the same one
    expected = [results.ratio("net_mibps", v, e) for v in virtio for e in emulated
                if v.split("/")[-1] == e.split("/")[-1]]
    yield Check("it is virtio-net's MiB/s over e1000's (within 2 %)",
                any(r and abs(answer - r) <= 0.02 * r for r in expected),
                hint="divide the virtio row's network column by the emulated row's, not the other way round")
