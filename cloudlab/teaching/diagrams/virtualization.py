"""Where each layer runs: hardware, host kernel (with KVM), QEMU processes, guest kernels, containers.

``layers(lab)`` is drawn from the live lab: the host's CPU and kernel, whether
KVM or TCG runs the guests, one QEMU process per server (its PID and vCPU
threads) with the guest kernel inside it, and the lab's containers as plain
processes straight on the host's kernel, fenced by namespaces and cgroups.

``hypervisor_types(lab)`` sets the two designs side by side: type 1 (Xen: the
hypervisor on the hardware, Dom0 a privileged guest that owns the device drivers
and does the other guests' I/O) and hosted (KVM + QEMU: the Linux kernel is the
hypervisor, each guest a QEMU process).  The hosted side is this lab's.
"""

import os
from pathlib import Path

from . import Diagram, graphviz_module


def _host_cpu():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU"


def _guest_kernel(server):
    try:
        result = server.run("uname -r", timeout=10)
        return result.stdout.strip() if result.ok else "?"
    except Exception:   # a diagram shows what it can; a server that stopped shows no kernel
        return "?"


def layers(lab, name="virtualization-layers"):
    """The layers of the live lab, hardware at the bottom, as a :class:`~cloudlab.teaching.diagrams.Diagram`."""
    graphviz = graphviz_module()
    g = graphviz.Digraph(name, graph_attr={"rankdir": "BT", "fontsize": "10", "nodesep": "0.3"},
                         node_attr={"shape": "box", "style": "rounded,filled", "fontsize": "10"})
    lines = []
    host = lab.host
    accel = host.accel
    cpu = f"{_host_cpu()} · {os.cpu_count()} cores"
    kernel = f"host Linux kernel {os.uname().release}"
    g.node("hw", f"hardware\n{cpu}", fillcolor="#dddddd")
    g.node("kernel", kernel + ("\n+ KVM module (hardware-assisted)" if accel == "kvm" else
                               "\n(KVM unusable here: QEMU's TCG emulates the CPU)"), fillcolor="#f2d7a6")
    g.edge("kernel", "hw")
    lines += [f"hardware: {cpu}", f"{kernel}, accelerator {accel}"]
    servers = lab.compute.list_servers() if "compute" in lab.running else []
    for server in servers:
        sid = f"s_{server.name}"
        try:
            proc = server.qemu_process()
            label = (f"QEMU process pid {proc.pid}\n{len(proc.vcpu_threads)} vCPU thread(s): "
                     f"{', '.join(n for _, n in proc.vcpu_threads)}")
        except Exception:   # not running: drawn without a process
            proc, label = None, "QEMU process (not running)"
        guest = _guest_kernel(server) if proc else "?"
        g.node(sid, label + f"\nemulates {server.profile} devices", fillcolor="#c6dbef")
        g.node(sid + "_guest", f"server {server.name}\nguest kernel {guest}", fillcolor="#9ecae1")
        g.edge(sid, "kernel")
        g.edge(sid + "_guest", sid)
        lines.append(f"server {server.name}: guest kernel {guest} in QEMU process "
                     f"{proc.pid if proc else '-'} ({server.profile}, {server.accel}) on the host kernel")
    containers = lab.containers.list_containers() if "containers" in lab.running else []
    for container in containers:
        cid = f"c_{container.name}"
        pid = container.pid
        g.node(cid, f"container {container.name}\nprocess pid {pid or '-'}\nnamespaces + cgroups",
               fillcolor="#c7e9c0")
        g.edge(cid, "kernel")
        lines.append(f"container {container.name}: process {pid or '-'} straight on the host kernel "
                     "(its own namespaces, cgroup limits, no guest kernel)")
    return Diagram(name, g, lines)


def hypervisor_types(lab, name="hypervisor-types"):
    """Type 1 (Xen, with Dom0) beside hosted (KVM + QEMU, this lab), as a Diagram."""
    graphviz = graphviz_module()
    g = graphviz.Digraph(name, graph_attr={"rankdir": "BT", "fontsize": "10"},
                         node_attr={"shape": "box", "style": "rounded,filled", "fontsize": "10"})
    with g.subgraph(name="cluster_xen") as x:
        x.attr(label="type 1: Xen", fontsize="11")
        x.node("x_hw", "hardware", fillcolor="#dddddd")
        x.node("x_hv", "Xen hypervisor\n(CPU and memory only)", fillcolor="#f2d7a6")
        x.node("x_dom0", "Dom0 (Linux)\ndevice drivers, backends,\nthe management tools", fillcolor="#fdd0a2")
        x.node("x_domu", "DomU guests\n(PV: hypercalls;\nHVM: emulated devices)", fillcolor="#9ecae1")
        x.edge("x_hv", "x_hw")
        x.edge("x_dom0", "x_hv")
        x.edge("x_domu", "x_hv")
        x.edge("x_domu", "x_dom0", label="I/O", style="dashed", fontsize="9")
    accel = lab.host.accel
    with g.subgraph(name="cluster_kvm") as k:
        k.attr(label="hosted: KVM + QEMU (this lab)", fontsize="11")
        k.node("k_hw", "hardware", fillcolor="#dddddd")
        k.node("k_kernel", f"Linux kernel {os.uname().release}\n"
                           + ("+ KVM: the kernel is the hypervisor" if accel == "kvm"
                              else "(here without KVM: TCG)"), fillcolor="#f2d7a6")
        k.node("k_qemu", "QEMU processes\n(device models: e1000, IDE, virtio)", fillcolor="#c6dbef")
        k.node("k_guest", "guests\n(unmodified kernels;\nvirtio drivers)", fillcolor="#9ecae1")
        k.edge("k_kernel", "k_hw")
        k.edge("k_qemu", "k_kernel")
        k.edge("k_guest", "k_qemu")
    lines = ["type 1 (Xen): hardware <- Xen hypervisor <- Dom0 (drivers) and DomU guests; guests' I/O goes through Dom0",
             f"hosted (this lab): hardware <- Linux kernel {os.uname().release} "
             f"({'with KVM' if accel == 'kvm' else 'TCG, no KVM'}) <- QEMU processes <- guests"]
    return Diagram(name, g, lines)
