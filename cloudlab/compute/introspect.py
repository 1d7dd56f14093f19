"""A server seen from both sides: what its guest sees, and what the host sees of it.

From the inside (:func:`guest_view`), one command through the agent reads what
the guest's kernel found: the disks it named (``vda`` from virtio-blk, ``sda``
from an IDE or SATA controller: the guest names them, not the request), every
PCI device with the driver bound to it (for a virtio device, the virtio driver
below ``virtio-pci``), the CPU's ``hypervisor`` flag (CPUID leaf 1, ECX bit
31), the kernel's "Hypervisor detected" and "Booting paravirtualized kernel on
..." lines, the clock source (``kvm-clock`` is the paravirtual one) and the
hardware RNG.

From the outside (:func:`qemu_process`), a server is one QEMU process of the host:
a PID, one thread per virtual CPU (QEMU names them ``CPU 0/KVM`` or ``CPU
0/TCG``), a few more for I/O, and resident memory that grows as the guest touches
its RAM.  With KVM the vCPU threads enter the guest through ``ioctl(KVM_RUN)``
and the CPU runs guest code directly; with TCG they run QEMU's translated code.
"""

import dataclasses
import json
from pathlib import Path

from ..errors import NotFound

# One round trip through the agent: sections "== name", then lines.
GUEST_PROBE = r"""
echo "== kernel"; uname -r
echo "== disks"; ls /sys/block
echo "== pci"
for d in /sys/bus/pci/devices/*; do
    drv=-
    [ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
    for v in "$d"/virtio*; do
        [ -e "$v/driver" ] && drv="$drv>$(basename "$(readlink "$v/driver")")"
    done
    echo "${d##*/} $(cat "$d/vendor") $(cat "$d/device") $(cat "$d/class") $drv"
done
echo "== nics"
for n in /sys/class/net/*; do
    [ -e "$n/device/driver" ] && echo "${n##*/} $(basename "$(readlink "$n/device/driver")")"
done
echo "== cpu"; grep -m1 '^flags' /proc/cpuinfo; grep -m1 '^model name' /proc/cpuinfo
echo "== dmesg"; dmesg | grep -e 'Hypervisor detected' -e 'Booting paravirtualized kernel' -e 'kvm-clock'
echo "== clocksource"
cat /sys/devices/system/clocksource/clocksource0/current_clocksource
cat /sys/devices/system/clocksource/clocksource0/available_clocksource
echo "== rng"; cat /sys/class/misc/hw_random/rng_current 2>/dev/null
echo "== modules"; cut -d' ' -f1 /proc/modules
"""

# PCI ids a learner meets in these guests (vendor 0x1af4 is virtio, 0x8086 Intel, 0x1b36 QEMU's own)
PCI_NAMES = {
    ("1af4", "1000"): "virtio network (legacy)", ("1af4", "1001"): "virtio block (legacy)",
    ("1af4", "1003"): "virtio console (legacy)", ("1af4", "1005"): "virtio RNG (legacy)",
    ("1af4", "1009"): "virtio 9p (legacy)",
    ("1af4", "1041"): "virtio network", ("1af4", "1042"): "virtio block", ("1af4", "1043"): "virtio console",
    ("1af4", "1044"): "virtio RNG", ("1af4", "1049"): "virtio 9p",
    ("8086", "100e"): "Intel 82540EM Ethernet (e1000)", ("8086", "7010"): "Intel PIIX3 IDE controller",
    ("8086", "7000"): "Intel PIIX3 ISA bridge", ("8086", "7113"): "Intel PIIX4 ACPI",
    ("8086", "1237"): "Intel 440FX host bridge", ("8086", "29c0"): "Intel Q35 host bridge",
    ("8086", "2918"): "Intel ICH9 LPC bridge", ("8086", "2922"): "Intel ICH9 SATA controller (AHCI)",
    ("8086", "2930"): "Intel ICH9 SMBus", ("1b36", "000c"): "QEMU PCIe root port",
}
VIRTIO_VENDOR = "1af4"


@dataclasses.dataclass(frozen=True)
class PciDevice:
    """One PCI device of the guest and the driver its kernel bound to it."""

    slot: str
    vendor: str        # 4 hex digits, e.g. "1af4"
    device: str
    pci_class: str     # 6 hex digits, e.g. "020000" (network)
    driver: str        # e.g. "e1000", "virtio-pci>virtio_net", or "-" for none

    @property
    def name(self):
        """A readable name for well-known ids, else ``vendor:device``."""
        return PCI_NAMES.get((self.vendor, self.device), f"{self.vendor}:{self.device}")

    @property
    def virtio(self):
        """True for a virtio device (vendor 0x1af4)."""
        return self.vendor == VIRTIO_VENDOR

    @property
    def guest_driver(self):
        """The driver that really drives it (for virtio: the one on the virtio bus)."""
        return self.driver.split(">")[-1]


@dataclasses.dataclass(frozen=True)
class GuestView:
    """What a guest's kernel sees of its (virtual) hardware."""

    kernel: str
    disks: tuple
    pci: tuple
    nics: dict
    hypervisor_flag: bool
    cpu_model: str
    hypervisor_detected: str      # e.g. "KVM", or "" when the kernel found none
    boot_line: str                # "Booting paravirtualized kernel on KVM" / "... on bare hardware"
    clocksource: str
    clocksources: tuple
    rng: str                      # e.g. "virtio_rng.0", or "" for none
    modules: tuple

    @property
    def virtio_devices(self):
        """The guest's virtio devices."""
        return [d for d in self.pci if d.virtio]

    def drivers(self):
        """``{device name: driver}`` for every PCI device that has a driver."""
        return {f"{d.slot} {d.name}": d.guest_driver for d in self.pci if d.guest_driver != "-"}

    def summary(self):
        """The view as a few ``label: value`` lines."""
        lines = [f"kernel:            {self.kernel}",
                 f"disks:             {', '.join(self.disks) or '(none)'}",
                 f"NIC drivers:       {', '.join(f'{n} {d}' for n, d in self.nics.items()) or '(none)'}",
                 f"virtio devices:    {len(self.virtio_devices)}",
                 f"hypervisor flag:   {'yes' if self.hypervisor_flag else 'no'} (CPUID.1:ECX bit 31)",
                 f"hypervisor found:  {self.hypervisor_detected or '(none named)'}",
                 f"boot line:         {self.boot_line or '(not in the log)'}",
                 f"clock source:      {self.clocksource} (available: {' '.join(self.clocksources)})",
                 f"hardware RNG:      {self.rng or '(none)'}"]
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def _sections(text):
    sections, current = {}, None
    for line in text.splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None and line.strip():
            current.append(line.strip())
    return sections


def _after(line, marker):
    at = line.find(marker)
    return line[at + len(marker):].strip() if at >= 0 else ""


def parse_guest(text):
    """A :class:`GuestView` from the output of :data:`GUEST_PROBE`."""
    s = _sections(text)
    pci = []
    for line in s.get("pci", []):
        parts = line.split()
        if len(parts) >= 5:
            slot, vendor, device, cls, driver = parts[:5]
            pci.append(PciDevice(slot, vendor.removeprefix("0x"), device.removeprefix("0x"),
                                 cls.removeprefix("0x"), driver))
    flags = next((line for line in s.get("cpu", []) if line.startswith("flags")), "")
    model = next((line.split(":", 1)[1].strip() for line in s.get("cpu", []) if line.startswith("model name")), "")
    dmesg = s.get("dmesg", [])
    detected = next((_after(line, "Hypervisor detected:") for line in dmesg if "Hypervisor detected:" in line), "")
    boot = next((line[line.find("Booting"):] for line in dmesg if "Booting paravirtualized kernel" in line), "")
    clock = s.get("clocksource", [])
    return GuestView(
        kernel=(s.get("kernel") or [""])[0],
        disks=tuple(sorted(d for line in s.get("disks", []) for d in line.split()
                           if not d.startswith(("loop", "ram", "zram")))),
        pci=tuple(pci),
        nics={line.split()[0]: line.split()[1] for line in s.get("nics", []) if len(line.split()) == 2},
        hypervisor_flag="hypervisor" in flags.split(),
        cpu_model=model,
        hypervisor_detected=detected,
        boot_line=boot,
        clocksource=clock[0] if clock else "",
        clocksources=tuple(clock[1].split()) if len(clock) > 1 else (),
        rng=(s.get("rng") or [""])[0] if (s.get("rng") or [""])[0] != "none" else "",
        modules=tuple(sorted(s.get("modules", []))),
    )


@dataclasses.dataclass(frozen=True)
class QemuProcess:
    """A guest as the host sees it: one QEMU process."""

    pid: int
    cmdline: tuple
    threads: tuple          # (thread id, name) for every thread
    rss_mib: float          # memory the process holds in RAM now
    guest_memory_mib: int   # memory the guest was given (-m)

    @property
    def vcpu_threads(self):
        """The threads that run the virtual CPUs (``CPU n/KVM`` or ``CPU n/TCG``)."""
        return tuple(t for t in self.threads if t[1].startswith("CPU "))

    @property
    def devices(self):
        """The device models QEMU was started with (``-device``), e.g. ``e1000``, ``virtio-net-pci``."""
        found = []
        for flag, value in zip(self.cmdline, self.cmdline[1:]):
            if flag != "-device":
                continue
            if value.startswith("{"):
                try:
                    found.append(json.loads(value).get("driver", "?"))
                    continue
                except ValueError:
                    pass
            found.append(value.split(",", 1)[0])     # older QEMU: driver,key=value,...
        return tuple(found)

    @property
    def machine(self):
        """The machine type QEMU emulates (``-machine``), e.g. ``pc-i440fx-7.2``."""
        for flag, value in zip(self.cmdline, self.cmdline[1:]):
            if flag == "-machine":
                return value.split(",", 1)[0]
        return ""

    @property
    def accel(self):
        """``kvm`` or ``tcg``, as the vCPU threads' names say."""
        names = " ".join(name for _, name in self.vcpu_threads)
        return "kvm" if "/KVM" in names else "tcg" if "/TCG" in names else "?"

    def summary(self):
        """The process as a few ``label: value`` lines."""
        lines = [f"QEMU process:  pid {self.pid}",
                 f"threads:       {len(self.threads)} ({len(self.vcpu_threads)} vCPU: "
                 f"{', '.join(n for _, n in self.vcpu_threads)})",
                 f"memory (RSS):  {self.rss_mib:.0f} MiB of the guest's {self.guest_memory_mib} MiB plus QEMU's own"]
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def find_qemu_pid(domain_name):
    """PID of the QEMU process that runs domain ``domain_name`` (libvirt names it ``-name guest=NAME,...``).

    Raises:
        NotFound: no such process (the server is not running).
    """
    mark = f"guest={domain_name},".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if mark in cmdline and b"qemu" in cmdline.split(b"\0", 1)[0]:
            return int(proc.name)
    raise NotFound(f"no QEMU process runs {domain_name}", fix="is the server running? (server.start())")


def qemu_process(pid):
    """The :class:`QemuProcess` of ``pid``, read from ``/proc``.

    Raises:
        NotFound: the process ended meanwhile.
    """
    base = Path(f"/proc/{pid}")
    try:
        cmdline = tuple(a.decode(errors="replace") for a in (base / "cmdline").read_bytes().split(b"\0") if a)
        threads = []
        for task in sorted(base.joinpath("task").iterdir(), key=lambda p: int(p.name)):
            try:
                threads.append((int(task.name), (task / "comm").read_text().strip()))
            except OSError:
                continue        # a thread that ended while we looked
        status = (base / "status").read_text()
    except FileNotFoundError:
        raise NotFound(f"QEMU process {pid} is gone", fix="is the server running?") from None
    rss_kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    memory = 0
    if "-m" in cmdline:
        value = cmdline[cmdline.index("-m") + 1]
        for part in value.split(","):
            part = part.removeprefix("size=")
            if part.rstrip("M").isdigit():
                memory = int(part.rstrip("M"))
                break
            if part.endswith("k") and part[:-1].isdigit():
                memory = int(part[:-1]) // 1024
                break
    return QemuProcess(pid=pid, cmdline=cmdline, threads=tuple(threads), rss_mib=rss_kib / 1024,
                       guest_memory_mib=memory)
