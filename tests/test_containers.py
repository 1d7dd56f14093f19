"""The container service on real podman and runc: images, containers, limits, the lab network, clean-up.

Unit tests first (network lists, image changes, file archives, the engine's
configuration and error lines), then one module-scoped lab whose containers
run for real: a container per test costs about 0.3 s, so the lab tier adds a
few seconds to `make test`.  Lab tests run inside the lab's network namespace
(CLOUDLAB_NETNS, set by `make test`) with the lab host up.
"""

import io
import ipaddress
import json
import os
import shutil
import subprocess
import tarfile

import pytest

import cloudlab as cl
from cloudlab import config
from cloudlab.containers import RUNNING, STOPPED, engine as engine_mod, images, kernel, leftovers, network
from cloudlab.containers.container import shell_command


# -- unit tests ------------------------------------------------------------------------------

def test_network_list_plugs_into_the_lab_bridge_above_the_dhcp_range(tmp_path):
    data = network.conflist("cloudlab-lab-net", "virbr3", "10.213.4.0/24", "10.213.4.1", tmp_path)
    bridge = data["plugins"][0]
    assert data["name"] == "cloudlab-lab-net"
    assert bridge["type"] == "bridge" and bridge["bridge"] == "virbr3"
    # the bridge keeps libvirt's address and nothing is NATed
    assert bridge["isGateway"] is False and bridge["ipMasq"] is False
    rng = bridge["ipam"]["ranges"][0][0]
    assert (rng["rangeStart"], rng["rangeEnd"], rng["gateway"]) == ("10.213.4.200", "10.213.4.254", "10.213.4.1")
    assert bridge["ipam"]["dataDir"] == str(tmp_path)
    assert [p["type"] for p in data["plugins"]] == ["bridge", "portmap"]
    assert [p["type"] for p in network.conflist("n", "b", "10.0.0.0/24", "10.0.0.1", tmp_path,
                                                portmap=False)["plugins"]] == ["bridge"]


def test_network_files_are_written_whole_and_removed_with_their_addresses(tmp_path):
    (tmp_path / "cni").mkdir()
    path = network.write(tmp_path / "cni", "cloudlab-x-net", "virbr0", "10.213.0.0/24", "10.213.0.1",
                         tmp_path / "ipam")
    assert json.loads(path.read_text())["name"] == "cloudlab-x-net"
    (tmp_path / "ipam" / "cloudlab-x-net").mkdir(parents=True)
    network.remove(tmp_path / "cni", "cloudlab-x-net", tmp_path / "ipam")
    assert not path.exists() and not (tmp_path / "ipam" / "cloudlab-x-net").exists()


def test_commands_and_changes():
    assert shell_command("echo hi") == ["sh", "-c", "echo hi"]
    assert shell_command(["ls", "-l", 3]) == ["ls", "-l", "3"]
    for bad in ("", "   ", [], None, [None]):
        with pytest.raises(cl.InvalidInput):
            shell_command(bad)
    assert images.changes(command="run", env={"A": "1 2"}, workdir="/app", ports=[80]) == [
        'CMD ["sh", "-c", "run"]', 'ENV A="1 2"', "WORKDIR /app", "EXPOSE 80"]
    for kwargs in ({"env": {"A B": "1"}}, {"workdir": "app"}, {"ports": [0]}, {"ports": ["80"]}):
        with pytest.raises(cl.InvalidInput):
            images.changes(**kwargs)


def test_image_names_carry_the_lab_prefix():
    assert images.ref("cloudlab-lab05-", "web") == "localhost/cloudlab-lab05-web:latest"
    assert images.name_of("cloudlab-lab05-", "localhost/cloudlab-lab05-web:latest") == "web"
    assert images.name_of("cloudlab-lab05-", "localhost/cloudlab-lab06-web:latest") is None
    assert images.name_of("cloudlab-lab05-", "docker.io/library/busybox:latest") is None


def test_files_archive_makes_parents_modes_and_copies(tmp_path):
    (tmp_path / "conf").write_text("x=1\n")
    data = images.files_tar({"/app/a.txt": "hello", ("/app/bin/run", 0o755): b"#!/bin/sh\n",
                             "/etc/app.conf": tmp_path / "conf"})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["app"].isdir() and members["app/bin"].isdir()
        assert tar.extractfile("app/a.txt").read() == b"hello"
        assert members["app/bin/run"].mode == 0o755
        assert tar.extractfile("etc/app.conf").read() == b"x=1\n"
        assert all(m.uid == 0 and m.gid == 0 for m in members.values())
    with pytest.raises(cl.InvalidInput):
        images.files_tar({"relative.txt": "x"})
    with pytest.raises(cl.InvalidInput):
        images.files_tar({"/a": 42})
    with pytest.raises(cl.NotFound):
        images.files_tar({"/a": tmp_path / "missing"})


def test_engine_configuration_is_its_own(tmp_path):
    engine = engine_mod.Engine(tmp_path / "engine").ensure()
    conf = (tmp_path / "engine" / "containers.conf").read_text()
    for setting in ('runtime = "runc"', 'cgroup_manager = "cgroupfs"', 'events_logger = "file"',
                    '"nofile=1024:1024"', 'pull_policy = "never"', 'network_backend = "cni"',
                    f'network_config_dir = "{tmp_path}/engine/cni"'):
        assert setting in conf
    storage = (tmp_path / "engine" / "storage.conf").read_text()
    assert f'graphroot = "{tmp_path}/engine/storage"' in storage
    # podman refuses a longer --runroot, and conmon's clean-up command gets it as one
    assert f'runroot = "{engine.runroot}"' in storage and len(str(engine.runroot)) <= 50
    shutil.rmtree(engine.runroot)
    assert "unqualified-search-registries = []" in (tmp_path / "engine" / "registries.conf").read_text()
    assert engine.env["CONTAINERS_CONF"] == str(tmp_path / "engine" / "containers.conf")
    assert engine.argv("ps") == ["podman", "ps"]
    gone = engine_mod.Engine(tmp_path / "engine", netns="cloudlab-no-such-namespace")
    assert gone.argv("ps", "-a") == ["podman", "ps", "-a"]     # queries still run: leftovers are found
    with pytest.raises(cl.MissingPrerequisite):
        gone.argv("run", "busybox")


def test_podman_error_line():
    stderr = 'time="x" level=warning msg="cpu"\nError: no container with name or ID "x" found\n'
    assert engine_mod.podman_error(stderr) == 'Error: no container with name or ID "x" found'
    assert engine_mod.podman_error("") == "(no message)"


def test_kernel_view_of_this_process():
    same = kernel.compare_namespaces(os.getpid())
    assert all(shared for _, _, shared in same.values())
    assert "memory" in kernel.cgroup_paths(os.getpid()) or "" in kernel.cgroup_paths(os.getpid())
    with pytest.raises(cl.NotFound):
        kernel.namespaces(2**22 + 12345)


# -- on real podman ----------------------------------------------------------------------------

lab_only = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    lab = cl.Lab(name="ctrtest")
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def web(lab):
    """One long-running container with the m1.tiny flavor, shared by the tests below."""
    return lab.containers.create_container("web", flavor="m1.tiny")


def _in_lab_netns(*argv):
    return subprocess.run(["nsenter", f"--net=/run/netns/{config.netns()}", *argv], capture_output=True,
                          text=True, timeout=30)


@lab_only
def test_container_is_a_host_process_with_its_own_namespaces(lab, web):
    assert web.status == RUNNING
    assert web.exec("hostname").stdout == "web\n"
    # PID 1 inside is the image's command; the host sees it under another PID
    assert "sleep 2147483647" in web.exec("cat /proc/1/cmdline").stdout
    assert web.pid > 1 and os.path.exists(f"/proc/{web.pid}")
    ns = web.namespaces()
    assert all(not ns[kind][2] for kind in ("pid", "mnt", "net", "uts", "ipc"))
    assert ns["user"][2]           # root inside is root outside: no user namespace
    # the host's kernel, not a guest's
    assert web.exec("uname -r").stdout.strip() == os.uname().release
    assert web.exec("ulimit -n").stdout.strip() == "1024"


@lab_only
def test_flavor_becomes_cgroup_limits(lab, web, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)     # the engine writes nothing where its caller happens to be
    limits = web.cgroup_limits()
    assert limits["memory_bytes"] == 128 * 2**20
    assert limits["cpus"] == 1.0
    assert lab.containers.cgroup_parent in limits["files"]["memory"]
    assert web.flavor == "m1.tiny"
    # the limit holds: a command that needs more memory than 16 MiB is killed by the kernel
    hog = lab.containers.create_container("hog", memory_mib=16,
                                          command="head -c 100000000 /dev/zero | tail > /dev/null")
    hog.wait(STOPPED, timeout=60)
    assert hog.exit_code == 137
    hog.delete()
    assert list(tmp_path.iterdir()) == []       # conmon's "oom" marker went to the engine's folder


@lab_only
def test_exec_returns_status_output_errors_and_takes_input(web):
    result = web.exec("echo out; echo err >&2; exit 3")
    assert (result.exit_status, result.stdout, result.stderr, result.ok) == (3, "out\n", "err\n", False)
    assert web.exec("tr a-z A-Z", input="hello").stdout == "HELLO"
    assert web.exec(["ls", "/no/such"]).exit_status != 0
    assert web.exec("echo $GREETING", env={"GREETING": "annyeong"}).stdout == "annyeong\n"


@lab_only
def test_address_on_the_lab_network_reached_by_host_and_containers(lab):
    containers = lab.containers
    site = containers.create_container(
        "site", command="mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www",
        ports={8080: 18080})
    try:
        assert ipaddress.ip_address(site.address) in lab.host.subnet
        assert ipaddress.ip_address(site.address) >= network.address_range(lab.host.subnet)[0]
        assert site.ports == {"8080/tcp": ("0.0.0.0", 18080)}
        client = containers.create_container("client")
        got = client.exec(f"for i in 1 2 3 4 5; do wget -qO- http://{site.address}:8080/ && break; sleep 0.2; done")
        assert got.stdout == "hello\n"
        # the lab host reaches it on its address, and on the published port of the bridge's address
        assert _in_lab_netns("busybox", "wget", "-qO-", f"http://{site.address}:8080/").stdout == "hello\n"
        assert _in_lab_netns("busybox", "wget", "-qO-", f"http://{lab.host.gateway}:18080/").stdout == "hello\n"
        client.delete()
    finally:
        site.delete()


@lab_only
def test_stop_start_keeps_files_and_logs_show_output(lab, web):
    assert web.exec("echo kept > /root/note").ok
    web.stop()
    assert web.status == STOPPED
    with pytest.raises(cl.Conflict):
        web.exec("true")
    with pytest.raises(cl.Conflict):
        web.namespaces()
    web.start()
    assert web.status == RUNNING
    assert web.exec("cat /root/note").stdout == "kept\n"
    with pytest.raises(cl.Conflict):
        web.start()
    # run to the end in one engine command: the answer is the command's, the container stays
    once, result = lab.containers.run_container("once", "echo $((6 * 7)); echo oops >&2; exit 3", flavor="m1.tiny")
    assert (result.exit_status, result.stdout, result.stderr) == (3, "42\n", "oops\n")
    assert once.status == STOPPED and once.exit_code == 3 and "42" in once.logs()
    once.delete()
    with pytest.raises(cl.InvalidInput):
        lab.containers.run_container("never", ["/no/such/program"])
    assert "never" not in [c.name for c in lab.containers.list_containers()]
    nobody = lab.containers.create_container("nobody", command="id -u", user="65534")
    nobody.wait(STOPPED, timeout=30)
    assert nobody.logs().strip() == "65534"
    nobody.delete()
    job = lab.containers.create_container("job", command="echo one; echo two >&2; exit 4")
    assert job.wait_for_exit(timeout=30) == 4
    assert job.status == STOPPED and job.exit_code == 4
    assert job.logs().splitlines() == ["one", "two"]
    job.delete()


@lab_only
def test_images_from_a_folder_a_tarball_and_a_build(lab, tmp_path):
    containers = lab.containers
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    busybox = lab.image.rootfs() / "bin" / "busybox"
    (root / "bin" / "busybox").write_bytes(busybox.read_bytes())
    (root / "bin" / "busybox").chmod(0o755)
    for applet in ("sh", "cat", "echo", "sleep"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "motd").write_text("from a folder\n")
    from_dir = containers.import_image("tiny", root, command="cat /motd")
    tar = tmp_path / "root.tar"
    images.pack_folder(root, tar)
    from_tar = containers.import_image("tiny-tar", tar, command=["cat", "/motd"])
    assert {"busybox", "tiny", "tiny-tar"} <= {i.name for i in containers.list_images()}
    assert from_dir.size > 0 and from_tar.ref.endswith("cloudlab-ctrtest-tiny-tar:latest")
    app = containers.build_image("app", base="tiny", files={("/app/run.sh", 0o755): "#!/bin/sh\necho $MSG\n"},
                                 command="/app/run.sh", env={"MSG": "built"}, workdir="/app")
    for image, expected in ((from_dir, "from a folder"), (from_tar, "from a folder"), (app, "built")):
        c = containers.create_container(f"run-{image.name}", image=image.name)
        c.wait(STOPPED, timeout=30)
        assert c.logs().strip() == expected
        if image is app:
            with pytest.raises(cl.Conflict):
                containers.delete_image("app")      # a container still uses it
        c.delete()
    for name in ("app", "tiny-tar", "tiny"):
        containers.delete_image(name)
    assert [i.name for i in containers.list_images()] == ["busybox"]


@lab_only
def test_bad_requests_are_refused_clearly(lab, web):
    containers = lab.containers
    calls = []
    real_run = containers.engine.run

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real_run(*args, **kwargs)

    containers.engine.run = counting
    try:
        with pytest.raises(cl.QuotaExceeded):
            containers.create_container("huge", memory_mib=10 ** 8)
        with pytest.raises(cl.QuotaExceeded):
            containers.create_container("many", cpus=(os.cpu_count() or 1) + 1)
        with pytest.raises(cl.InvalidInput):
            containers.create_container("bad name")
        assert calls == []          # refused before the engine was asked
    finally:
        containers.engine.run = real_run
    with pytest.raises(cl.NotFound) as err:
        containers.create_container("x", image="nginx")
    assert "busybox" in err.value.fix
    with pytest.raises(cl.NotFound):
        containers.create_container("x", flavor="m1.gigantic")
    with pytest.raises(cl.InvalidInput) as err:
        containers.create_container("x", command=["/no/such/program"])
    assert "/no/such/program" in str(err.value)
    with pytest.raises(cl.Conflict):
        containers.create_container("web")
    with pytest.raises(cl.InvalidInput):
        containers.delete_image("busybox")
    with pytest.raises(cl.NotFound):
        containers.get_container("nobody")
    assert "x" not in [c.name for c in containers.list_containers()]


@lab_only
def test_stop_removes_every_container_image_network_and_cgroup_of_the_lab():
    lab = cl.Lab(name="ctrgone")
    c = lab.containers.create_container("one", flavor="m1.tiny")
    lab.containers.build_image("extra", files={"/x": "x"})
    pid = c.pid
    assert any(lab.prefix in item for item in leftovers(lab.prefix))
    lab.stop()
    assert leftovers(lab.prefix) == []
    assert not os.path.exists(f"/proc/{pid}")
    assert not kernel.matching_dirs(lab.prefix, "")
