"""A compute node that is another machine, reached over ``qemu+ssh://`` (issue 13's remote nodes).

A classroom runs one layout across several machines: the lab's controller on one, a
compute node on another, whose libvirtd the lab drives over ssh.  The traffic rule
allows no other machine here, so the "other machine" is made inside the lab's own
namespace from the lab's own parts: a second lab's compute node (a network namespace
with its own address, host name and libvirtd), plus an OpenSSH server started by this
test in that node's namespaces, with a host key and an authorized key generated under
the test's tmp folder.  The lab under test knows only the URI and the key, exactly as
it would know a classmate's machine; the remote shares this machine's disk, which is
what a real one gets from an NFS share of the lab's folders.
"""

import os
import shutil
import subprocess
import time

import pytest

import cloudlab as cl
from cloudlab import config, host
from cloudlab.host import nodes as nodes_mod
from cloudlab.host.ownership import all_processes, child_env
from cloudlab.process import stop_process

BOOT_TIMEOUT = 90
SSHD = "/usr/sbin/sshd"


# -- topologies with remote nodes (no lab needed) --------------------------------------------

def test_a_remote_node_is_plain_data():
    topo = cl.Topology(name="class", nodes=[])
    topo.add_node("controller", "controller", "storage")
    node = topo.add_node("desk7", "compute", uri="qemu+ssh://root@192.0.2.7/system?keyfile=/k&no_verify=1")
    assert node.address == "192.0.2.7" and node.uri.startswith("qemu+ssh://")
    assert topo.add_node("desk8", "compute", uri="qemu+tcp://desk8/system", address="192.0.2.8").address == "192.0.2.8"


def test_bad_remote_nodes_are_refused():
    topo = cl.Topology(name="class", nodes=[])
    with pytest.raises(cl.InvalidInput, match="not a libvirt URI"):
        topo.add_node("desk7", "compute", uri="ssh://root@192.0.2.7")
    with pytest.raises(cl.InvalidInput, match="names no machine"):
        topo.add_node("desk7", "compute", uri="qemu+ssh:///system")
    with pytest.raises(cl.InvalidInput, match="only be a compute node"):
        topo.add_node("desk7", "controller", "compute", uri="qemu+ssh://root@192.0.2.7/system")
    with pytest.raises(cl.InvalidInput, match="no uri"):
        topo.add_node("compute1", "compute", address="192.0.2.7")
    assert topo.nodes == []


# -- a remote machine inside the lab's namespace ---------------------------------------------

def _needs_lab():
    if not config.netns() or os.geteuid():
        pytest.skip("lab tests run as root inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    if not os.path.exists(SSHD) or not shutil.which("ssh-keygen"):
        pytest.skip("needs Debian's openssh-server (make lab installs it)")


def _start_sshd(node, folder):
    """An OpenSSH server in ``node``'s network, mount and UTS namespaces (those of its libvirtd), on port 22.

    It gets a mount namespace of its own below the node's, with a private /run: sshd needs
    /run/sshd, and the node's /run/libvirt is bound back in so that libvirt's helper on the
    server side (virt-ssh-helper) finds the node's libvirtd at the standard socket path,
    as on any machine.  Root logs in with the key made here, and only with it.
    """
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"cloudlab-test-{key}",
                        "-f", str(folder / key)], check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    conf = folder / "sshd_config"
    conf.write_text(f"ListenAddress {node.address}:22\nHostKey {folder / 'host_key'}\n"
                    f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
                    "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n")
    script = (f"mount -t tmpfs cloudlab-sshd /run && mkdir -p /run/sshd /run/libvirt && "
              f"mount --bind {node.state_path / 'run'} /run/libvirt && exec {SSHD} -D -e -f {conf}")
    log = open(folder / "sshd.log", "wb")
    proc = subprocess.Popen(["nsenter", f"--target={node.pids['libvirtd']}", "--net", "--mount", "--uts",
                             "unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=child_env())
    log.close()
    deadline = time.monotonic() + 10
    while "Server listening" not in (folder / "sshd.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            pytest.fail(f"sshd did not start: {(folder / 'sshd.log').read_text()}")
        time.sleep(0.05)
    return proc


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """Another "machine": a second lab's compute node ``faraway`` with an sshd; yields (node, key file, sshd)."""
    _needs_lab()
    topo = cl.Topology(name="machine", nodes=[])
    topo.add_node("gateway", "controller", "storage")
    topo.add_node("faraway", "compute")
    other = cl.Lab(topo, name="machine")
    sshd = None
    try:
        node = other.nodes["faraway"]
        folder = tmp_path_factory.mktemp("remote-machine")
        sshd = _start_sshd(node, folder)
        yield node, folder / "client_key", sshd
    finally:
        if sshd is not None:
            stop_process(sshd)          # by its own pid: nothing else of the machine's
        other.stop()


def _remote_lab(name, uri):
    topo = cl.Topology(name="classroom", nodes=[])
    topo.add_node("controller", "controller", "storage")
    topo.add_node("faraway", "compute", uri=uri)
    return cl.Lab(topo, name=name)


def _made_nothing(lab):
    key = lab.prefix.rstrip("-")
    assert [n for n in nodes_mod.node_namespaces() if f".{key}." in n] == []
    assert not list(nodes_mod.nodes_dir().glob(f"{key}.*"))


@pytest.mark.lab
def test_a_server_on_a_remote_node(machine):
    node, key, sshd = machine
    uri = f"qemu+ssh://root@{node.address}/system?keyfile={key}&no_verify=1"
    lab = _remote_lab("classroom", uri)
    try:
        remote = lab.nodes["faraway"]
        assert not remote.local and remote.remote == uri and remote.address == node.address
        assert remote.is_up and remote.machine_hostname == "faraway"
        assert remote.netns is None and remote.processes() == []
        # the lab's own nodes are namespaces of this machine; the remote is none of them
        assert nodes_mod.netns.exists(lab.nodes.controller.netns)
        assert not any(n.endswith(".faraway") and ".classroom" in n for n in nodes_mod.node_namespaces())

        server = lab.compute.create_server("far", timeout=BOOT_TIMEOUT)
        assert server.status == "ACTIVE" and server.host == "faraway"
        assert server.network is None          # the tenant network does not reach another machine
        # the guest runs under the remote machine's libvirtd (reached over ssh), not this one's
        assert [d.name() for d in node.connect().listAllDomains()] == [server.domain_name]
        qemu = [p for p in all_processes() if p.name == "qemu-system-x86_64" and server.domain_name in p.cmdline]
        assert len(qemu) == 1 and qemu[0].net_inode == node.netns_inode
        assert lab.compute.hypervisors()[0]["host"] == "faraway"
        # an ssh session carries the connection: libvirt's helper runs on the remote side of it
        assert any(p for p in all_processes() if p.name == "virt-ssh-helper" and p.net_inode == node.netns_inode)
        picture = lab.diagram(save=False)
        assert "faraway -- remote (libvirt over qemu+ssh)" in picture.lines
        assert "  server far (ACTIVE)" in picture.lines
        with pytest.raises(cl.Conflict, match="remote machine"):
            remote.stop()
        assert lab.nodes.time()["faraway"] == {"stratum": None, "offset_s": None, "delay_s": None, "up": True,
                                               "remote": True}
        server.delete()
        assert node.connect().listAllDomains() == []
        assert not server.disk.exists()
    finally:
        lab.stop()
    _made_nothing(lab)
    # the remote machine is left as it was: its libvirtd still runs and answers
    assert node.is_up and node.connect().getHostname() == "faraway"
    assert sshd.poll() is None
    assert host.leftovers(prefix=lab.prefix, only=["nodes", "files"]) == []


@pytest.mark.lab
def test_an_unreachable_remote_node_is_refused_with_nothing_made(machine):
    node, key, _ = machine
    # the machine's gateway node: an address in the lab's namespace where no sshd listens
    gateway = node._nodes["gateway"].address
    uri = f"qemu+ssh://root@{gateway}/system?keyfile={key}&no_verify=1"
    lab = _remote_lab("unreachable", uri)
    started = time.monotonic()
    with pytest.raises(cl.HostUnreachable, match="remote node faraway") as err:
        lab.nodes  # noqa: B018
    assert uri in err.value.message and "keyfile" in err.value.fix
    assert time.monotonic() - started < 20
    _made_nothing(lab)
    lab.stop()


@pytest.mark.lab
def test_a_remote_without_the_key_is_refused(machine):
    node, key, _ = machine
    stranger = key.parent / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    lab = _remote_lab("stranger", f"qemu+ssh://root@{node.address}/system?keyfile={stranger}&no_verify=1")
    # BatchMode: ssh does not fall back to asking for a password, it fails at once
    with pytest.raises(cl.HostUnreachable, match="does not answer"):
        lab.nodes  # noqa: B018
    _made_nothing(lab)
    lab.stop()
