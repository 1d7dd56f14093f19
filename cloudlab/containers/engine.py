"""The container engine: podman, with a configuration of the lab host's own.

A container is an ordinary process of the host's kernel that the kernel shows a
smaller world: its own namespaces (PID, mount, network, UTS, IPC) and cgroup
limits on memory and CPU.  An OCI runtime (``runc``) sets those up from a
bundle; ``podman`` prepares the bundle (image layers stacked with overlayfs),
calls the runtime through ``conmon`` (which keeps the container's output), and
plugs the container into a network with CNI plugins.  There is no daemon:
every ``podman`` command reads and writes the engine's state on disk.

cloudlab never touches the machine's /etc/containers or /var/lib/containers.
Every podman command gets ``CONTAINERS_CONF``, ``CONTAINERS_STORAGE_CONF`` and
``CONTAINERS_REGISTRIES_CONF`` pointing at files under the lab host's state
folder, with the settings that work on a host without systemd (HOST.md):
``runc`` (crun refuses a cgroup v1 hybrid layout), ``cgroupfs`` as cgroup
manager, events in a file, and ulimits below the host's own (the default raises
RLIMIT_NOFILE, which needs CAP_SYS_RESOURCE).  No registry is ever contacted:
images are imported from local tarballs and the pull policy is ``never``.

With ``CLOUDLAB_NETNS`` set, podman runs inside that network namespace (through
``nsenter --net``, not ``ip netns exec``, which would remount /sys and hide the
cgroup file systems), so the veths and the containers' addresses live beside
the lab's bridge and guests, and nothing else.
"""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from .. import config
from ..errors import CloudlabError, MissingPrerequisite, ResourceTimeout
from ..host import netns as netns_mod

PODMAN = "podman"
PACKAGES = "podman runc containernetworking-plugins"
CNI_PLUGIN_DIRS = ["/usr/lib/cni", "/usr/libexec/cni", "/opt/cni/bin"]
# below the host's hard limits: podman's defaults would raise them, which needs CAP_SYS_RESOURCE
ULIMITS = ["nofile=1024:1024", "nproc=1000:1000"]
DEFAULT_TIMEOUT_S = 120
# commands that only read the engine's state (they run even when the lab host is down)
QUERIES = ("ps", "images", "image", "container", "inspect", "logs")

CONTAINERS_CONF = """\
# written by cloudlab for its container engine; the machine's /etc/containers is untouched
[containers]
default_ulimits = {ulimits}
log_driver = "k8s-file"
# the pids controller is not usable here; 0 means no pids limit (and no warning)
pids_limit = 0

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{root}/events.log"
tmp_dir = "{root}/tmp"
static_dir = "{root}/storage/libpod"
volume_path = "{root}/storage/volumes"
# images come from local tarballs only: never from a registry
pull_policy = "never"

[network]
network_backend = "cni"
network_config_dir = "{root}/cni"
cni_plugin_dirs = {plugin_dirs}
"""
STORAGE_CONF = """\
# written by cloudlab for its container engine
[storage]
driver = "overlay"
graphroot = "{root}/storage"
runroot = "{runroot}"
"""
REGISTRIES_CONF = """\
# written by cloudlab: no registry is searched; every image is local
unqualified-search-registries = []
short-name-mode = "disabled"
"""


def _boot_id():
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


class Engine:
    """podman for one lab host: its configuration files, state folders and network namespace.

    Args:
        root: folder of the engine's configuration and state.
        netns: network namespace podman runs in (None: the host's own network).
    """

    def __init__(self, root, netns=None):
        self.root = Path(root)
        self.netns = netns
        self._ready = False

    @property
    def id(self):
        """Which lab host this engine belongs to: its network namespace, or ``host``."""
        return self.netns or "host"

    @property
    def runroot(self):
        """Folder of the engine's run-time state (``storage.conf``'s ``runroot``).

        Podman refuses a ``--runroot`` longer than 50 characters (the attach sockets under
        it must fit a socket address), and the clean-up command conmon runs when a
        container exits gets it on its command line: with a longer one that command
        fails, the container is never marked as exited, and every attached ``podman
        run`` waits 20 s for it.  A lab home such as ``/root/.local/share/cloudlab``
        is already too long, so the run-time state lives under /run, named by the
        engine's root.
        """
        digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
        return Path("/run/cloudlab") / f"podman-{digest}"

    @property
    def network_dir(self):
        """Folder of the CNI network lists (``*.conflist``) podman reads."""
        return self.root / "cni"

    @property
    def ipam_dir(self):
        """Folder where CNI's host-local IPAM records the addresses it gave out."""
        return self.root / "ipam"

    @property
    def cwd(self):
        """Working folder of every podman command: conmon writes files (``oom``) into its own."""
        return str(self.root / "tmp")

    @property
    def env(self):
        """The environment of every podman command: the machine's, plus the three configuration files."""
        env = dict(os.environ)
        env.update(CONTAINERS_CONF=str(self.root / "containers.conf"),
                   CONTAINERS_STORAGE_CONF=str(self.root / "storage.conf"),
                   CONTAINERS_REGISTRIES_CONF=str(self.root / "registries.conf"))
        return env

    def ensure(self):
        """Write the configuration (idempotent) and check that podman and runc are installed.

        After a reboot of the machine the run-time state (:attr:`runroot`, ``tmp/``) describes
        containers that no longer exist; it is emptied then, as a tmpfs would be.

        Raises:
            MissingPrerequisite: podman, runc or the CNI plugins are missing.
        """
        if self._ready:
            return self
        for program in (PODMAN, "runc", "conmon"):
            if not shutil.which(program, path=os.pathsep.join(["/usr/bin", "/usr/sbin", "/usr/libexec/podman",
                                                                os.environ.get("PATH", "")])):
                raise MissingPrerequisite(f"{program} is not installed (the container engine needs it)",
                                          fix=f"run `make lab`, or `sudo apt-get install {PACKAGES}`")
        if not any(Path(d, "bridge").exists() for d in CNI_PLUGIN_DIRS):
            raise MissingPrerequisite("the CNI plugins (bridge, host-local) are not installed",
                                      fix="sudo apt-get install containernetworking-plugins")
        self._forget_other_runroot(STORAGE_CONF.format(root=self.root, runroot=self.runroot))
        for sub in ("storage", "tmp", "cni", "ipam"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.runroot.mkdir(parents=True, exist_ok=True)
        boot = self.root / "boot_id"
        if boot.exists() and boot.read_text() != _boot_id():
            for folder in (self.runroot, self.root / "tmp"):
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
        boot.write_text(_boot_id())
        files = {
            "containers.conf": CONTAINERS_CONF.format(root=self.root, ulimits=json.dumps(ULIMITS),
                                                      plugin_dirs=json.dumps(CNI_PLUGIN_DIRS)),
            "storage.conf": STORAGE_CONF.format(root=self.root, runroot=self.runroot),
            "registries.conf": REGISTRIES_CONF,
        }
        for name, text in files.items():
            path = self.root / name
            if not path.exists() or path.read_text() != text:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text)
                os.replace(tmp, path)
        self._ready = True
        return self

    def _forget_other_runroot(self, storage_conf):
        """Reset an engine made with another runroot (podman refuses to open its database then).

        Engines of earlier cloudlab versions kept it under their root; their containers
        are the labs' (re-created by the labs) and their images are imported again on use.
        """
        path = self.root / "storage.conf"
        if not path.exists() or path.read_text() == storage_conf or \
                not (self.root / "storage" / "libpod").exists():
            return
        subprocess.run([PODMAN, "system", "reset", "--force"], env=self.env, capture_output=True, cwd=self.root,
                       timeout=DEFAULT_TIMEOUT_S, check=False)

    def argv(self, *args):
        """The full command line of ``podman ARGS`` as this engine runs it (inside the namespace).

        Once the lab host is down its namespace is gone; queries (listing, inspecting)
        still run, outside it, so leftovers can be found.

        Raises:
            MissingPrerequisite: the namespace is gone and the command would change something.
        """
        args = [str(a) for a in args]
        if self.netns and not netns_mod.exists(self.netns):
            if args and args[0] in QUERIES and (args[0] not in ("image", "container") or
                                                args[1:2] in (["exists"], ["inspect"])):
                return [PODMAN, *args]
            raise MissingPrerequisite(f"the lab host is down: its network namespace {self.netns} does not exist",
                                      fix="python -m cloudlab host up")
        return netns_mod.enter_args(self.netns) + [PODMAN, *args]

    def run(self, *args, input=None, timeout=DEFAULT_TIMEOUT_S, what=None, check=True):
        """Run ``podman ARGS`` and return the ``CompletedProcess`` (text output).

        Args:
            input: text or bytes for podman's standard input (bytes: output stays bytes too).
            timeout: seconds before podman is killed.
            what: what this command does, for the error message.
            check: raise on a non-zero exit status.
        Raises:
            CloudlabError: podman failed (the message carries its error line).
            ResourceTimeout: podman did not finish in time.
        """
        self.ensure()
        binary = isinstance(input, (bytes, bytearray))
        try:
            result = subprocess.run(self.argv(*args), input=input, capture_output=True, text=not binary,
                                    env=self.env, timeout=timeout, cwd=self.cwd)
        except FileNotFoundError:
            raise MissingPrerequisite("podman is not installed", fix=f"sudo apt-get install {PACKAGES}") from None
        except subprocess.TimeoutExpired:
            raise ResourceTimeout(f"{what or 'podman ' + str(args[0])} did not finish within {timeout} s",
                                  fix="the machine may be overloaded; try again") from None
        if check and result.returncode != 0:
            raise CloudlabError(f"{what or 'podman ' + str(args[0])} failed: {podman_error(result.stderr)}",
                                fix="python -m cloudlab doctor")
        return result

    def json(self, *args, what=None):
        """Run ``podman ARGS`` whose output is JSON, and return it parsed (``[]`` for no output)."""
        out = self.run(*args, what=what).stdout.strip()
        return json.loads(out) if out else []


def podman_error(stderr):
    """The line of podman's standard error that says what went wrong (its last ``Error:`` line)."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    return (errors or lines or ["(no message)"])[-1]


_engines = {}


def host_engine():
    """The engine of the lab host this process uses (one per network namespace, like libvirtd)."""
    from ..host import state_dir
    key = (str(config.home()), config.netns())
    if key not in _engines:
        _engines[key] = Engine(state_dir() / "containers", config.netns())
    return _engines[key]
