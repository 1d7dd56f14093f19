"""Lab 00's graded exercises: what the lab host has (accelerator, network, image, memory)."""

from ..exercise import Check, exercise


def _number(answer):
    return isinstance(answer, (int, float)) and not isinstance(answer, bool)


@exercise("00.1", title="KVM or emulation?", points=1)
def accelerator(lab, answer=None):
    """The accelerator the lab host runs guests with, as the host reports it."""
    yield Check("answer is a string", isinstance(answer, str), hint='answer = "kvm" or answer = "tcg"')
    yield Check("it is kvm or tcg", answer.strip().lower() in ("kvm", "tcg"),
                hint="the two ways QEMU runs a guest here: kvm (hardware-assisted) or tcg (emulation)")
    yield Check("it is the accelerator this lab host uses", answer.strip().lower() == lab.host.accel,
                hint="look at lab.host.accel, or the doctor's accelerator row")


@exercise("00.2", title="How many addresses can the lab network hand out?", points=2)
def dhcp_addresses(lab, answer=None):
    """The size of the lab network's DHCP range, read from libvirt."""
    yield Check("answer is a whole number", isinstance(answer, int) and not isinstance(answer, bool),
                hint="answer = <a number>")
    start, end = lab.host.dhcp_range()
    yield Check("it is the number of addresses in the network's DHCP range", answer == int(end) - int(start) + 1,
                hint="find <range start=... end=...> in host.virsh('net-dumpxml', host.network); "
                     "both ends count")


@exercise("00.3", title="Thin provisioning: how much bigger is the disk than its file?", points=2)
def thin_provisioning(lab, answer=None):
    """The ratio of the busybox image's virtual size to the bytes its qcow2 file takes, within 10 %."""
    yield Check("answer is a number", _number(answer), hint="answer = <a number>")
    image = lab.image.get_image("busybox")
    ratio = image.virtual_size / image.size
    yield Check("it is how many times the virtual size exceeds the file's size (within 10 %)",
                abs(answer - ratio) <= 0.1 * ratio,
                hint="divide the image's virtual_size by its size (both in bytes)")


@exercise("00.4", title="How many tiny servers would fit in memory?", points=2)
def servers_that_fit(lab, answer=None):
    """How many m1.tiny servers the host's free memory holds now, within 10 % (memory moves)."""
    yield Check("answer is a whole number", isinstance(answer, int) and not isinstance(answer, bool),
                hint="answer = <a number>")
    tiny = lab.compute.get_flavor("m1.tiny")
    fit = lab.host.free_memory_mib() // tiny.ram_mib
    yield Check("it is the host's free memory divided by m1.tiny's memory (within 10 %)",
                abs(answer - fit) <= max(1, 0.1 * fit),
                hint="lab.host.free_memory_mib() gives the free MiB; lab.compute.get_flavor('m1.tiny') the size")
