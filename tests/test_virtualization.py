"""Virtualization profiles side by side: what each guest sees, what the host sees, and the workloads timed.

Unit tests parse a guest's probe output and lay out a results table; the lab
tests boot one server per device profile (two boots for the whole module) and
ask both the same questions, plus one container and the host for the
workloads, which run with small sizes here (the benchmark runs longer ones).
"""

import os

import pytest

import cloudlab as cl
from cloudlab import config, workload
from cloudlab.compute import introspect

PROBE_VIRTIO = """== kernel
6.1.0-57-amd64
== disks
loop0 vda
== pci
0000:00:00.0 0x8086 0x29c0 0x060000 -
0000:00:1f.2 0x8086 0x2922 0x010601 -
0000:01:00.0 0x1af4 0x1041 0x020000 virtio-pci>virtio_net
0000:03:00.0 0x1af4 0x1042 0x010000 virtio-pci>virtio_blk
== nics
eth0 virtio_net
== cpu
flags : fpu de pse tsc msr hypervisor lahf_lm
model name : QEMU Virtual CPU version 2.5+
== dmesg
[    0.000000] Hypervisor detected: KVM
[    0.000000] Booting paravirtualized kernel on KVM
[    0.000000] kvm-clock: Using msrs 4b564d01 and 4b564d00
== clocksource
kvm-clock
kvm-clock tsc hpet acpi_pm
== rng
virtio_rng.0
== modules
virtio_net
virtio_blk
"""


def test_guest_probe_parses_what_the_guest_sees():
    view = introspect.parse_guest(PROBE_VIRTIO)
    assert view.kernel == "6.1.0-57-amd64"
    assert view.disks == ("vda",)                      # loop devices are not disks of the server
    assert view.nics == {"eth0": "virtio_net"}
    assert [d.name for d in view.virtio_devices] == ["virtio network", "virtio block"]
    assert view.virtio_devices[1].guest_driver == "virtio_blk"
    assert view.drivers() == {"0000:01:00.0 virtio network": "virtio_net", "0000:03:00.0 virtio block": "virtio_blk"}
    assert view.hypervisor_flag and view.hypervisor_detected == "KVM"
    assert view.boot_line == "Booting paravirtualized kernel on KVM"
    assert (view.clocksource, view.clocksources[0], view.rng) == ("kvm-clock", "kvm-clock", "virtio_rng.0")
    assert "kvm-clock" in str(view)
    bare = introspect.parse_guest("== cpu\nflags : fpu\n== rng\nnone\n")
    assert not bare.hypervisor_flag and bare.rng == "" and bare.disks == () and bare.hypervisor_detected == ""


def test_results_table_names_unavailable_targets_and_computes_ratios():
    rows = [(workload.Target("VM virtio / tcg", "vm"), {"ready_s": 3.0, "cpu_s": 0.5, "write_mibps": 300.0,
                                                       "read_mibps": 900.0, "net_mibps": 250.0}),
            (workload.Target("VM emulated / tcg", "vm"), {"ready_s": 3.1, "cpu_s": 0.5, "write_mibps": 100.0,
                                                         "read_mibps": 300.0, "net_mibps": 50.0}),
            (workload.unavailable("VM virtio / kvm", "KVM is not usable on this host"), {"ready_s": None})]
    results = workload.Results(rows, workload.QUICK)
    assert results.ratio("write_mibps", "VM virtio / tcg", "VM emulated / tcg") == 3.0
    assert results.ratio("net_mibps", "VM virtio / tcg", "VM virtio / kvm") is None
    text = str(results)
    assert "not available: KVM is not usable on this host" in text and "300" in text
    assert "<i>not available: KVM is not usable on this host</i>" in results._repr_html_()
    fig = results.plot()
    assert len(fig.axes) == len(workload.METRICS)


# -- on real QEMU ------------------------------------------------------------------------------

BOOT_TIMEOUT = 120


@pytest.fixture(scope="module")
def lab():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    lab = cl.Lab(name="virttest")
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def targets(lab):
    """One server per profile, booted once for the module (at the same time: the ready times are not tested)."""
    profiles = ("virtio", "emulated")
    booted = workload.boot_servers(lab.compute, [(p, p, None) for p in profiles], timeout=BOOT_TIMEOUT)
    assert all(t.available and t.ready_s > 0 for t in booted)
    return dict(zip(profiles, booted))


@pytest.mark.lab
def test_the_guest_sees_its_profile(lab, targets):
    virtio = targets["virtio"].resource.guest_view()
    emulated = targets["emulated"].resource.guest_view()
    assert virtio.kernel == emulated.kernel                        # the same image
    assert virtio.disks == ("vda",) and emulated.disks == ("sda",)
    assert virtio.nics == {"eth0": "virtio_net"} and emulated.nics == {"eth0": "e1000"}
    assert {d.guest_driver for d in virtio.virtio_devices} >= {"virtio_net", "virtio_blk", "virtio_rng"}
    assert virtio.rng == "virtio_rng.0"
    # full emulation: no virtio device, no virtio driver loaded, the agent on a UART
    assert emulated.virtio_devices == [] and not any(m.startswith("virtio") for m in emulated.modules)
    assert emulated.rng == ""
    assert "ata_piix" in emulated.drivers().values() and "e1000" in emulated.drivers().values()
    for view in (virtio, emulated):
        assert view.hypervisor_flag                                 # QEMU sets CPUID's hypervisor bit
        if lab.host.accel == "tcg":
            # TCG is no hypervisor the kernel can name: no kvm-clock, "bare hardware"
            assert view.hypervisor_detected == "" and "kvm-clock" not in view.clocksources
            assert view.boot_line.endswith("on bare hardware")
        else:
            assert view.hypervisor_detected == "KVM"
    if lab.host.accel == "kvm":
        assert virtio.clocksource == "kvm-clock" and "kvm-clock" not in emulated.clocksources


@pytest.mark.lab
def test_the_host_sees_a_qemu_process_per_guest(lab, targets):
    processes = {p: t.resource.qemu_process() for p, t in targets.items()}
    assert processes["virtio"].pid != processes["emulated"].pid
    for profile, proc in processes.items():
        server = targets[profile].resource
        assert len(proc.vcpu_threads) == server.flavor.vcpus
        assert proc.accel == lab.host.accel == server.accel
        assert proc.guest_memory_mib == server.flavor.ram_mib
        assert proc.rss_mib > 16
        assert f"guest={server.domain_name}," in " ".join(proc.cmdline)
    assert {"virtio-blk-pci", "virtio-net-pci", "virtio-rng-pci"} <= set(processes["virtio"].devices)
    assert {"ide-hd", "e1000", "isa-serial"} <= set(processes["emulated"].devices)
    assert not any("virtio" in d for d in processes["emulated"].devices)
    assert processes["emulated"].machine.startswith("pc-i440fx") and processes["virtio"].machine.startswith("pc-q35")
    with pytest.raises(cl.NotFound):
        introspect.find_qemu_pid(lab.prefix + "no-such-server")


@pytest.mark.lab
def test_kvm_where_it_does_not_work_names_the_doctors_finding(lab):
    if lab.host.accel == "kvm":
        pytest.skip("KVM works on this host")
    with pytest.raises(cl.MissingPrerequisite) as err:
        lab.compute.create_server("k", accel="kvm")
    assert "KVM is not usable on this host" in err.value.message and "doctor" in err.value.message
    assert "accel='tcg'" in err.value.fix
    target = workload.boot_server(lab.compute, "k2", accel="kvm")
    assert not target.available and "KVM" in target.reason
    with pytest.raises(cl.InvalidInput):
        lab.compute.create_server("k3", accel="xen")
    assert [s.name for s in lab.compute.list_servers()] == ["emulated", "virtio"]


@pytest.mark.lab
def test_workloads_side_by_side(lab, targets):
    container = workload.start_container(lab.containers, "bench")
    host = workload.host_target(lab)
    chosen = [targets["virtio"], targets["emulated"], container, host]
    results = workload.compare(lab, chosen, cpu_rounds=5_000_000, disk_mib=8, net_mib=8)
    for target in chosen:
        for key in ("cpu_s", "write_mibps", "read_mibps", "net_mibps"):
            assert results.get(target.label, key) > 0, (target.label, key)
    assert results.get("VM virtio / " + lab.host.accel, "ready_s") > results.get("container", "ready_s")
    # the scratch files are gone
    assert not list(lab.home.glob(f"{lab.prefix}measure*"))
    assert not targets["virtio"].resource.run("ls /root/cloudlab-measure.dat").ok
    # the container is a host process: its kernel is the host's; the guests' is not
    assert container.resource.exec("uname -r").stdout.strip() == os.uname().release
    assert targets["virtio"].resource.run("uname -r").stdout.strip() != os.uname().release
    container.resource.delete()


@pytest.mark.lab
def test_layers_diagram_from_the_live_lab(lab, targets):
    virtualization = cl.diagrams.virtualization
    text = str(virtualization.layers(lab))
    assert "server virtio: guest kernel" in text and "server emulated: guest kernel" in text
    assert f"accelerator {lab.host.accel}" in text
    assert "Dom0" in str(virtualization.hypervisor_types(lab))
    assert "<svg" in virtualization.layers(lab).svg()


@pytest.mark.lab
def test_lab04_checks_take_any_correct_answer(lab, targets):
    from cloudlab.teaching.exercise import run_exercise
    assert run_exercise("04.1", lab, answer="sda").passed
    assert run_exercise("04.1", lab, answer="/dev/sda").passed
    hda = [c for c in run_exercise("04.1", lab, answer="hda").checks if not c.ok]
    assert hda and "names the disk itself" in hda[0].hint
    assert not run_exercise("04.1", lab, answer="vda").passed
    assert not run_exercise("04.2", lab).passed          # no pv2 yet
    accel = lab.host.accel
    rows = [(workload.Target(f"VM virtio / {accel}", "vm", profile="virtio"), {"net_mibps": 300.0}),
            (workload.Target(f"VM emulated / {accel}", "vm", profile="emulated"), {"net_mibps": 60.0})]
    results = workload.Results(rows, workload.QUICK)
    assert run_exercise("04.4", lab, answer=5, results=results).passed
    assert run_exercise("04.4", lab, answer=5.05, results=results).passed
    assert not run_exercise("04.4", lab, answer=0.2, results=results).passed     # the other way round
    assert not run_exercise("04.4", lab, answer=5).passed                        # results not given
