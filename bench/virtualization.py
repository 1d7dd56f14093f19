"""Virtualization benchmark: device profiles, accelerators and containers, all in one run.

Prints one ``name value`` line per figure (issue 10's targets in brackets):

    virtio_disk_ratio       virtio-blk over emulated IDE: sequential direct-I/O write MiB/s,
                            the same image, the same workload                       [report; >= 2 expected]
    virtio_net_ratio        virtio-net over e1000: TCP MiB/s guest -> host          [report; >= 2 expected]
    container_ready_ratio   cloudlab's run_container(C) (create, run, C's exit status and
                            output back), over `podman run IMAGE C` with the same
                            image, command, network and limits (medians)            [<= 1.2]
    vm_over_container_start VM ready (create_server -> agent answers) over container
                            ready (create_container -> a first exec answers)
                            (medians)                                               [report]
    container_cpu_ratio     the CPU loop's time in a container over on the host
                            (best of each, alternated)                              [<= 1.05]

followed by the raw values behind them (``container_exec_ready_ratio``: a long-running
container and a first ``exec``, two podman commands, over the same ``podman run``),
the disk ratios again with 4 KiB requests
(``virtio_disk_ratio_4k``: the per-request cost of each device model weighs most
there), and ``kvm_available`` (0 with the doctor's
finding as a comment where KVM does not work).  Disk, network and CPU figures are
the best of BENCH_REPEAT runs (default 5); start times the median of BENCH_ROUNDS
(default 5), ours and the peer's alternated so a noisy neighbour slows both alike.
Run with ``make bench`` or ``python bench/virtualization.py`` (the lab host stays
in its own network namespace, like the tests).
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("CLOUDLAB_NETNS", "cloudlab-bench")

import cloudlab as cl  # noqa: E402
from cloudlab import host as host_mod, workload  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
# the guest's root file system has about 55 MiB free: 32 MiB files fit
SETTINGS = {"cpu_rounds": 200_000_000, "disk_mib": 32, "block_kib": 1024, "net_mib": 64, "repeat": REPEAT}


def figure(name, value):
    """Print one figure as ``name value``."""
    print(f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}", flush=True)


def note(text):
    """A comment line (not a figure)."""
    print(f"# {text}", flush=True)


def profiles(lab):
    """Disk and network throughput of a virtio and an emulated server (and KVM rows where it works)."""
    accels = ["tcg", "kvm"] if lab.host.accel == "kvm" else ["tcg"]
    targets = [workload.boot_server(lab.compute, f"{p}-{a}", profile=p, accel=a)
               for a in accels for p in ("virtio", "emulated")]
    results = workload.compare(lab, targets, **{k: v for k, v in SETTINGS.items() if k != "cpu_rounds"},
                               cpu_rounds=20_000_000)
    # small requests: the per-request cost of each device model shows most
    small = workload.compare(lab, targets, cpu_rounds=0, disk_mib=8, block_kib=4, net_mib=0, repeat=REPEAT)
    for target in targets:
        if target.available:
            target.resource.delete()
    return results, small


def container_start(lab):
    """Medians: cloudlab's container ready (command answered; exec answered), `podman run`, a VM's ready."""
    containers = lab.containers
    engine = containers.engine
    image = containers.get_image("busybox")
    limits = ["--memory", "128m", "--memory-swap", "128m", "--cpus", "1"]
    ours, ours_exec, peer, vm = [], [], [], []
    containers.create_container("warm", flavor="m1.tiny").delete()     # page cache, image layers
    for i in range(ROUNDS):
        # the same image and command, run to its answer: one engine command each
        started = time.monotonic()
        c, result = containers.run_container(f"start{i}", "echo ready", flavor="m1.tiny")
        answered = result.ok and result.stdout == "ready\n"
        ours.append(time.monotonic() - started)
        c.delete()
        name = f"{lab.prefix}peer{i}"
        argv = engine.argv("run", "--name", name, "--network", containers.network, *limits,
                           "--cgroup-parent", "/" + containers.cgroup_parent, image.ref, "echo", "ready")
        started = time.monotonic()
        out = subprocess.run(argv, env=engine.env, capture_output=True, text=True, timeout=120, cwd=engine.cwd)
        peer.append(time.monotonic() - started)
        engine.run("rm", "-f", name, check=False)
        # a long-running container, then a first command through exec (as a VM's agent answers one)
        started = time.monotonic()
        c = containers.create_container(f"exec{i}", flavor="m1.tiny")
        answered = answered and c.exec("echo ready").stdout == "ready\n"
        ours_exec.append(time.monotonic() - started)
        c.delete()
        if not answered or out.stdout != "ready\n":
            note(f"round {i}: a container did not answer ({out.stderr.strip()[-200:]})")
    for i in range(max(2, ROUNDS // 2)):
        target = workload.boot_server(lab.compute, f"ready{i}")
        vm.append(target.ready_s)
        target.resource.delete()
    return statistics.median(ours), statistics.median(ours_exec), statistics.median(peer), statistics.median(vm)


def container_cpu(lab):
    """Best CPU-loop time in a container and on the host, runs alternated."""
    container = workload.start_container(lab.containers, "cpu")
    host = workload.host_target(lab)
    rounds = SETTINGS["cpu_rounds"]
    inside, outside = [], []
    for _ in range(REPEAT):
        inside.append(workload.measure(container, None, cpu_rounds=rounds, disk_mib=0, repeat=1)["cpu_s"])
        outside.append(workload.measure(host, None, cpu_rounds=rounds, disk_mib=0, repeat=1)["cpu_s"])
    container.resource.delete()
    return min(inside), min(outside)


def main():
    """Run every figure and print it."""
    was_up = host_mod.load_state() is not None and host_mod._healthy(host_mod.load_state())
    lab = cl.Lab(name="vbench")
    try:
        accel = lab.host.accel
        results, small = profiles(lab)
        v, e = "VM virtio / tcg", "VM emulated / tcg"
        figure("virtio_disk_ratio", results.ratio("write_mibps", v, e))
        figure("virtio_net_ratio", results.ratio("net_mibps", v, e))
        ours, ours_exec, peer, vm = container_start(lab)
        figure("container_ready_ratio", ours / peer)
        figure("vm_over_container_start", vm / ours_exec)
        inside, outside = container_cpu(lab)
        figure("container_cpu_ratio", inside / outside)
        # the values behind the ratios
        for label, key, name in ((v, "write_mibps", "virtio_write_mibps"), (e, "write_mibps", "emulated_write_mibps"),
                                 (v, "read_mibps", "virtio_read_mibps"), (e, "read_mibps", "emulated_read_mibps"),
                                 (v, "net_mibps", "virtio_net_mibps"), (e, "net_mibps", "e1000_net_mibps"),
                                 (v, "cpu_s", "virtio_cpu_s"), (e, "cpu_s", "emulated_cpu_s")):
            figure(name, results.get(label, key))
        figure("virtio_read_ratio", results.ratio("read_mibps", v, e))
        figure("virtio_disk_ratio_4k", small.ratio("write_mibps", v, e))
        figure("virtio_read_ratio_4k", small.ratio("read_mibps", v, e))
        figure("container_ready_s", ours)
        figure("podman_run_s", peer)
        figure("container_exec_ready_s", ours_exec)
        figure("container_exec_ready_ratio", ours_exec / peer)
        figure("vm_ready_s", vm)
        figure("container_cpu_s", inside)
        figure("host_cpu_s", outside)
        if accel == "kvm":
            figure("kvm_available", 1)
            figure("kvm_over_tcg_write", results.ratio("write_mibps", "VM virtio / kvm", v))
            figure("tcg_over_kvm_cpu", results.ratio("cpu_s", v, "VM virtio / kvm"))
        else:
            from cloudlab.doctor import kvm_finding
            figure("kvm_available", 0)
            note(f"KVM rows not measured: {kvm_finding()}")
        note("the machine is shared; figures measured while others load it are noisy")
        print(results, file=sys.stderr)
    finally:
        lab.stop()
        if not was_up:
            host_mod.down(quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
