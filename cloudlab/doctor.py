"""The doctor: is this machine ready to run the lab, and if not, what fixes it?

One row per prerequisite, each found or missing, with the exact command that
fixes a missing one.  ``python -m cloudlab doctor`` prints the table and exits
non-zero when a required row is missing; in a notebook, ``cl.doctor()`` shows the
same table.  Rows that only some labs need (chrony, graphviz) are marked as such
and do not fail the doctor.
"""

import dataclasses
import html
import os
import shutil
import sys
from pathlib import Path

from . import config

SBIN = os.pathsep.join(["/usr/sbin", "/sbin", os.environ.get("PATH", "")])


@dataclasses.dataclass
class Row:
    """One prerequisite: what it is, whether it is there, what it is, how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _which(name):
    return shutil.which(name, path=SBIN)


def _program(name, package, required=True, purpose=""):
    path = _which(name)
    detail = "found" if path else "missing"
    if purpose:
        detail += f" ({purpose})"
    return Row(name, bool(path), detail, f"sudo apt-get install {package}", required)


def _python_module(module, fix):
    try:
        mod = __import__(module)
        version = getattr(mod, "__version__", "")
        if hasattr(mod, "getVersion"):          # libvirt: 9000000 means 9.0.0
            v = mod.getVersion()
            version = f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"
        return Row(f"python: {module}", True, f"found {version}".strip())
    except ImportError:
        return Row(f"python: {module}", False, "missing", fix)


def _busybox():
    path = _which("busybox")
    if not path:
        return Row("busybox-static", False, "missing", "sudo apt-get install busybox-static")
    static = b"ld-linux" not in Path(path).resolve().read_bytes()[:4096]
    return Row("busybox-static", static, "found, static" if static else "dynamically linked",
               "sudo apt-get install busybox-static")


def _image():
    from . import image
    builds = image._cached_builds()
    if builds:
        return Row("guest image", True, f"built ({builds[-1].name})")
    return Row("guest image", False, "not built yet", "python -m cloudlab image build")


def _accelerator():
    from . import host
    state = host.load_state()
    if state is not None:
        accel = state.accel
    elif os.environ.get("CLOUDLAB_ACCEL") in ("kvm", "tcg"):
        accel = os.environ["CLOUDLAB_ACCEL"]
    else:
        return Row("accelerator", False, "not decided yet (the host is not up)",
                   "python -m cloudlab host up")
    if accel == "kvm":
        return Row("accelerator", True, "KVM: a guest booted with it")
    return Row("accelerator", True, f"emulation (QEMU TCG): {kvm_finding()}; guests are slower but real")


def kvm_finding():
    """Why KVM is or is not used here, in one phrase (the accelerator row's words)."""
    from . import host
    state = host.load_state()
    accel = state.accel if state else os.environ.get("CLOUDLAB_ACCEL")
    if accel == "kvm":
        return "a KVM guest booted"
    if os.environ.get("CLOUDLAB_ACCEL") == "tcg":
        return "CLOUDLAB_ACCEL=tcg asks for emulation"
    if not os.path.exists("/dev/kvm"):
        return "there is no /dev/kvm (no KVM module, or no VT-x/AMD-V reaches this machine)"
    return ("/dev/kvm is there but a KVM guest did not boot within the probe's time "
            "(nested virtualization that does not work)")


def _memory():
    avail = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            avail = int(line.split()[1]) // 1024
    return Row("free memory", avail >= 512, f"{avail} MiB available",
               "close programs or stop other labs: `python -m cloudlab clean`")


def _netns():
    from .host import netns
    name = config.netns()
    if not name:
        return Row("network namespace", True, "not used (CLOUDLAB_NETNS is not set)", required=False)
    if netns.exists(name):
        return Row("network namespace", True, f"{name} exists")
    return Row("network namespace", False, f"{name} does not exist yet", "python -m cloudlab host up")


def _libvirtd():
    from . import host
    state = host.load_state()
    if state is None or not host._healthy(state):
        return Row("libvirtd", False, "not answering", "python -m cloudlab host up  (or `make lab`)")
    who = "cloudlab's own" if state.private else "the system's"
    return Row("libvirtd", True, f"{who}, {state.uri.split('?')[0]}")


def run():
    """Check every prerequisite and return the rows (see :class:`Report`)."""
    rows = [
        _program("qemu-system-x86_64", "qemu-system-x86"),
        _program("qemu-img", "qemu-utils"),
        _program("libvirtd", "libvirt-daemon-system"),
        _program("virsh", "libvirt-clients"),
        _python_module("libvirt", "make lab   (installs libvirt-python into .venv)"),
        _busybox(),
        _program("dpkg-deb", "dpkg"),
        _program("apt-get", "apt"),
        _program("mke2fs", "e2fsprogs"),
        _program("gcc", "gcc libc6-dev", purpose="guest clock client, object store group commit"),
        _program("ip", "iproute2"),
        _program("dnsmasq", "dnsmasq-base"),
        _program("dot", "graphviz", required=False, purpose="architecture diagrams"),
        _program("chronyd", "chrony", required=False, purpose="NTP lab and benchmark"),
        _program("ganesha.nfsd", "nfs-ganesha nfs-ganesha-vfs", required=False,
                 purpose="file storage lab: the share server"),
        _program("mkfs.xfs", "xfsprogs", required=False, purpose="file storage lab: each share's filesystem"),
        _program("qemu-storage-daemon", "qemu-system-common", required=False,
                 purpose="block storage lab: volumes served over NBD"),
        _program("podman", "podman runc containernetworking-plugins", required=False,
                 purpose="container service, labs 05 and later"),
        _program("haproxy", "haproxy", required=False, purpose="the platform's load balancer, labs 01 and 02"),
        _program("wrk", "wrk", required=False, purpose="load generator, lab 02 and the benchmarks"),
        _image(),
        _accelerator(),
        _memory(),
        _netns(),
        _libvirtd(),
    ]
    return Report(rows)


class Report:
    """The doctor's rows; ``ok`` is True when every required row is fine."""

    def __init__(self, rows):
        self.rows = rows

    @property
    def ok(self):
        """True when the lab can run."""
        return all(r.ok for r in self.rows if r.required)

    @property
    def missing(self):
        """The rows that are not fine."""
        return [r for r in self.rows if not r.ok]

    def __str__(self):
        width = max(len(r.name) for r in self.rows)
        lines = []
        for r in self.rows:
            mark = "\u2714" if r.ok else ("\u2718" if r.required else "-")
            line = f"{mark} {r.name:<{width}}  {r.detail}"
            if not r.ok:
                line += f"\n  {'':<{width}}  fix: {r.fix}"
            lines.append(line)
        verdict = "the lab can run" if self.ok else "the lab cannot run until the rows marked \u2718 are fixed"
        lines.append(verdict)
        return "\n".join(lines)

    def _repr_html_(self):
        cells = []
        for r in self.rows:
            mark = "\u2714" if r.ok else ("\u2718" if r.required else "-")
            fix = f"<code>{html.escape(r.fix)}</code>" if not r.ok else ""
            cells.append(f"<tr><td>{mark}</td><td>{html.escape(r.name)}</td>"
                         f"<td>{html.escape(r.detail)}</td><td>{fix}</td></tr>")
        verdict = "the lab can run" if self.ok else "the lab cannot run until the rows marked \u2718 are fixed"
        return ("<table><tr><th></th><th>prerequisite</th><th>status</th><th>fix</th></tr>"
                + "".join(cells) + f"</table><p>{verdict}</p>")

    def __repr__(self):
        return str(self)


def add_arguments(parser):
    """Arguments of ``python -m cloudlab doctor`` (none)."""


def main(args):
    """Print the doctor's table; exit status 1 when the lab cannot run."""
    report = run()
    print(report)
    sys.stdout.flush()
    return 0 if report.ok else 1
