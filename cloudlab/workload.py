"""The same workloads, timed in servers of each profile and accelerator, in a container and on the host.

One static program, ``cloudlab-measure`` (``cloudlab/image/guest/measure.c``),
is on the guest image's disk; the container image is that same root file
system, and the host runs the same file.  So a comparison changes only *where*
the workload runs:

* **CPU loop**: integer arithmetic and table updates, timed inside.  Under KVM
  the CPU runs it directly; under TCG QEMU translates it; in a container it is
  an ordinary process of the host, limited only by its cgroup's CPU quota.
* **disk**: sequential writes then reads of a file with ``O_DIRECT`` (past the
  guest's page cache, so every block goes through the virtual disk: virtio-blk
  or the emulated IDE controller).
* **network**: a TCP stream to a receiver on the lab network's gateway address,
  inside the lab's network namespace (the host end of every guest's and
  container's link), through virtio-net, the emulated e1000 or a veth.
* **ready**: create to first command answered (a server's agent, a container's exec).

``compare(lab, targets)`` runs them all and returns :class:`Results`: a table
(shown in a notebook) and ``plot()``.  A target that cannot exist on this host
(KVM where KVM does not work) is a row that says why.
"""

import dataclasses
import html
import shlex
import subprocess
import time

from .errors import CloudlabError, MissingPrerequisite
from .host import netns as netns_mod

MEASURE = "cloudlab-measure"
MIB = 2 ** 20
# small enough for a lab cell on a loaded 2-core machine; the benchmark passes more
QUICK = {"cpu_rounds": 20_000_000, "disk_mib": 16, "block_kib": 1024, "net_mib": 16, "repeat": 1}
METRICS = (  # key, column title, unit, better
    ("ready_s", "ready", "s", "lower"),
    ("cpu_s", "CPU loop", "s", "lower"),
    ("write_mibps", "disk write", "MiB/s", "higher"),
    ("read_mibps", "disk read", "MiB/s", "higher"),
    ("net_mibps", "network to host", "MiB/s", "higher"),
)


@dataclasses.dataclass
class Target:
    """Somewhere a workload runs: a server, a container or the host.

    Args:
        label: how tables name it, e.g. ``VM virtio / tcg``.
        kind: ``vm``, ``container`` or ``host``.
        run: callable taking an argument list (``cloudlab-measure`` first) and returning a CommandResult.
        scratch: file the disk workload writes, inside the target.
        profile, accel: the server's device profile and accelerator (None elsewhere).
        ready_s: seconds from create to the first command answered (None: not measured).
        reason: why the target is unavailable (empty when it is available).
    """

    label: str
    kind: str
    run: object = None
    scratch: str = "/root/cloudlab-measure.dat"
    profile: str = None
    accel: str = None
    ready_s: float = None
    reason: str = ""
    resource: object = None     # the Server or Container, for the caller

    @property
    def available(self):
        """True when the workload can run here."""
        return not self.reason


def _server_runner(server):
    def run(argv, timeout=300):
        return server.run(shlex.join([str(a) for a in argv]), timeout=timeout)
    return run


def server_target(server, ready_s=None):
    """A :class:`Target` for a running server."""
    accel = getattr(server, "accel", None)
    return Target(f"VM {server.profile} / {accel}", "vm", _server_runner(server), profile=server.profile,
                  accel=accel, ready_s=ready_s, resource=server)


def container_target(container, ready_s=None):
    """A :class:`Target` for a running container."""
    def run(argv, timeout=300):
        return container.exec([str(a) for a in argv], timeout=timeout)
    return Target("container", "container", run, ready_s=ready_s, resource=container)


def host_target(lab):
    """A :class:`Target` for the lab host itself (the same binary, run in the lab's network namespace)."""
    binary = str(lab.image.rootfs() / "usr" / "bin" / MEASURE)
    ns = lab.host.netns

    def run(argv, timeout=300):
        from .image.agent import CommandResult
        args = [binary if a == MEASURE else str(a) for a in argv]
        result = subprocess.run(netns_mod.enter_args(ns) + args, capture_output=True, text=True, timeout=timeout)
        return CommandResult(result.returncode, result.stdout, result.stderr)

    return Target("host", "host", run, scratch=str(lab.home / f"{lab.prefix}measure.dat"))


def unavailable(label, reason, kind="vm", profile=None, accel=None):
    """A :class:`Target` that cannot run here, and why."""
    return Target(label, kind, reason=reason, profile=profile, accel=accel)


def boot_server(compute, name, profile="virtio", accel=None, flavor="m1.tiny", timeout=120):
    """Create a server and time it to ready; returns its :class:`Target`.

    An accelerator this host lacks (KVM where it does not work) gives an
    unavailable target whose reason is the doctor's finding, instead of an error.
    """
    label = f"VM {profile} / {accel or compute.host.accel}"
    started = time.monotonic()
    try:
        server = compute.create_server(name, profile=profile, accel=accel, flavor=flavor, timeout=timeout)
    except MissingPrerequisite as exc:
        return unavailable(label, exc.message, profile=profile, accel=accel)
    return server_target(server, ready_s=time.monotonic() - started)


def boot_servers(compute, specs, flavor="m1.tiny", timeout=180):
    """Boot several servers at once, each timed from its own request to ready; returns their Targets in order.

    Args:
        specs: ``(name, profile, accel)`` triples (accel None: the host's).
    On a 2-core host under emulation guests booting together slow each other a
    little; each still gets its own ready time, measured under the same load.
    """
    from concurrent.futures import ThreadPoolExecutor
    specs = list(specs)
    with ThreadPoolExecutor(max(1, len(specs))) as pool:
        futures = [pool.submit(boot_server, compute, name, profile=profile, accel=accel, flavor=flavor,
                               timeout=timeout) for name, profile, accel in specs]
        return [f.result() for f in futures]


def start_container(containers, name, image="busybox", flavor="m1.tiny"):
    """Create a container and time it to its first command answered; returns its :class:`Target`."""
    started = time.monotonic()
    container = containers.create_container(name, image=image, flavor=flavor)
    container.exec("true")
    return container_target(container, ready_s=time.monotonic() - started)


class Sink:
    """The TCP receiver that network workloads send to: on the lab network's gateway, in the lab's namespace.

    Use as a context manager; ``address`` and ``port`` say where it listens.
    """

    def __init__(self, lab):
        self.lab = lab
        self.address = lab.host.gateway
        self.port = None
        self._proc = None

    def __enter__(self):
        binary = str(self.lab.image.rootfs() / "usr" / "bin" / MEASURE)
        self._proc = subprocess.Popen(netns_mod.enter_args(self.lab.host.netns) +
                                      [binary, "sink", self.address, "0"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            self.__exit__()
            raise CloudlabError(f"the network receiver did not start on {self.address}",
                                fix="is the lab network up? (lab.host)")
        self.port = int(line[1].rsplit(":", 1)[1])
        return self

    def __exit__(self, *exc):
        if self._proc is not None:
            from .process import stop_process
            stop_process(self._proc, timeout=2)
            for stream in (self._proc.stdout, self._proc.stderr):
                stream.close()
            self._proc = None
        return False


def _value(target, argv, what, timeout=300):
    result = target.run(argv, timeout=timeout)
    fields = result.stdout.split()
    if not result.ok or len(fields) < 3:
        raise CloudlabError(f"{what} in {target.label} failed: {(result.stderr or result.stdout).strip()[-300:]}")
    return int(fields[1]), float(fields[2])


def _wait_for_route(target, address, timeout=60):
    """Wait until a server's guest can reach ``address``: DHCP runs in the background after it is ready.

    libvirt shows the lease as soon as dnsmasq grants it; the guest configures its
    address a moment later, so the guest itself is asked.
    """
    target.resource.wait_for_address(timeout=timeout)
    tries = int(timeout * 10)
    result = target.run(["sh", "-c", f"for i in $(seq {tries}); do ip route get {address} >/dev/null 2>&1 "
                                     "&& exit 0; usleep 100000; done; exit 1"], timeout=timeout + 10)
    if not result.ok:
        raise CloudlabError(f"{target.label} has no route to {address} after {timeout} s",
                            fix="read the server's console_log(): did DHCP give it an address?")


def measure(target, sink=None, cpu_rounds=QUICK["cpu_rounds"], disk_mib=QUICK["disk_mib"],
            block_kib=QUICK["block_kib"], net_mib=QUICK["net_mib"], repeat=QUICK["repeat"]):
    """Run every workload in ``target`` (best of ``repeat``) and return ``{metric: value}``.

    Args:
        sink: a running :class:`Sink` (no network workload without one).
        cpu_rounds: rounds of the CPU loop (0: none).
        disk_mib, block_kib: size of the file and of each direct-I/O request (0 MiB: no disk workload).
        net_mib: MiB sent to the host.
        repeat: runs of each workload; the best is kept.
    """
    row = {"ready_s": target.ready_s}
    if not target.available:
        return row
    m = MEASURE
    if cpu_rounds:
        row["cpu_s"] = min(_value(target, [m, "cpu", cpu_rounds], "the CPU loop")[1] for _ in range(repeat))
    if disk_mib:
        writes, reads = [], []
        try:
            for _ in range(repeat):
                size, seconds = _value(target, [m, "write", target.scratch, disk_mib, block_kib], "the disk write")
                writes.append(size / MIB / seconds)
                size, seconds = _value(target, [m, "read", target.scratch, block_kib], "the disk read")
                reads.append(size / MIB / seconds)
        finally:
            target.run(["rm", "-f", target.scratch])
        row["write_mibps"], row["read_mibps"] = max(writes), max(reads)
    if sink is not None:
        if target.kind == "vm" and target.resource is not None:
            _wait_for_route(target, sink.address)
        sends = []
        for _ in range(repeat):
            size, seconds = _value(target, [m, "send", sink.address, sink.port, net_mib], "the network send")
            sends.append(size / MIB / seconds)
        row["net_mibps"] = max(sends)
    return row


def compare(lab, targets, **settings):
    """Measure every target (see :func:`measure` for ``settings``) and return :class:`Results`."""
    rows = []
    with Sink(lab) as sink:
        for target in targets:
            rows.append((target, measure(target, sink, **settings)))
    return Results(rows, {**QUICK, **settings})


class Results:
    """The measured table: one row per target, one column per workload."""

    def __init__(self, rows, settings):
        self.rows = rows
        self.settings = settings

    def get(self, label, metric):
        """The value of ``metric`` (e.g. ``write_mibps``) for the target labelled ``label``, or None."""
        for target, row in self.rows:
            if target.label == label:
                return row.get(metric)
        return None

    def ratio(self, metric, label, other):
        """``metric`` of ``label`` over that of ``other`` (None when either is missing)."""
        a, b = self.get(label, metric), self.get(other, metric)
        return a / b if a and b else None

    @property
    def labels(self):
        """The targets' labels, in order."""
        return [t.label for t, _ in self.rows]

    def _cells(self):
        head = ["target"] + [f"{title} ({unit})" for _, title, unit, _ in METRICS]
        body = []
        for target, row in self.rows:
            if not target.available:
                body.append([target.label, f"not available: {target.reason}"])
                continue
            body.append([target.label] + ["-" if row.get(key) is None else
                                          (f"{row[key]:.2f}" if row[key] < 100 else f"{row[key]:.0f}")
                                          for key, *_ in METRICS])
        return head, body

    def __str__(self):
        head, body = self._cells()
        widths = [max(len(head[i]), *(len(r[i]) for r in body if len(r) == len(head))) for i in range(len(head))]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
        for r in body:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) if len(r) == len(head)
                         else f"{r[0].ljust(widths[0])}  {r[1]}")
        return "\n".join(lines)

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        head, body = self._cells()
        rows = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
        for r in body:
            if len(r) == len(head):
                rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
            else:
                rows.append(f"<tr><td>{html.escape(r[0])}</td><td colspan='{len(head) - 1}'>"
                            f"<i>{html.escape(r[1])}</i></td></tr>")
        return "<table>" + "".join(rows) + "</table>"

    def plot(self):
        """One bar chart per workload (a matplotlib Figure); unavailable targets are left out."""
        import matplotlib
        if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline", "agg"):
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        shown = [(t, r) for t, r in self.rows if t.available]
        fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 0.5 * len(shown) + 1.6))
        colors = {"vm": "#4c72b0", "container": "#55a868", "host": "#8c8c8c"}
        for ax, (key, title, unit, better) in zip(axes, METRICS):
            labels = [t.label for t, _ in shown]
            values = [r.get(key) or 0 for _, r in shown]
            ax.barh(labels, values, color=[colors.get(t.kind, "#999") for t, _ in shown])
            ax.set_title(f"{title}\n({unit}, {better} is better)", fontsize=9)
            ax.invert_yaxis()
            ax.tick_params(labelsize=8)
            if ax is not axes[0]:
                ax.set_yticklabels([])
        fig.tight_layout()
        plt.close(fig)
        return fig
