"""The container service (the role of OpenStack Zun): images and containers on a real OCI engine.

    containers = lab.containers
    web = containers.create_container("web", image="busybox", flavor="m1.tiny")
    web.exec("hostname").stdout          # 'web\\n'
    web.address                          # its address on the lab network
    web.cgroup_limits()["memory_bytes"]  # 134217728: the flavor's 128 MiB, set by the kernel
    job, result = containers.run_container("job", "echo hi")    # run to the end, the answer back

How it is built (one module each):

* :mod:`~cloudlab.containers.engine`: podman with runc, configured under the lab
  host's state folder (never the machine's /etc), inside the lab's network namespace;
* :mod:`~cloudlab.containers.images`: images from a root file system (tarball or
  folder) or built from a base plus files and a command; no registry;
* :mod:`~cloudlab.containers.network`: containers plugged into the lab network's
  bridge, so servers (VMs) and containers reach each other;
* :mod:`~cloudlab.containers.container`: one container: status, exec, logs, stop,
  start, delete, its address and ports;
* :mod:`~cloudlab.containers.kernel`: what the host's kernel keeps for it: its
  namespaces and its cgroup limits.

A flavor (the compute service's, e.g. ``m1.tiny``: 1 vCPU, 128 MiB) becomes
cgroup limits: ``--memory`` (memory.limit_in_bytes) and ``--cpus`` (a CFS quota of
that many CPUs' time per period).  Every container, image, network and cgroup
carries the lab's prefix; :meth:`Containers.stop` and :func:`clean` remove the
lab's and nothing else, and :func:`leftovers` finds any that remain.
"""

import os
import re
import threading
import time
from pathlib import Path

from ..errors import CloudlabError, Conflict, InvalidInput, NotFound, QuotaExceeded
from . import images as images_mod
from . import kernel, network as network_mod
from ..image.agent import CommandResult
from .container import (CREATED, DELETED, ERROR, PAUSED, PODMAN_FAILED, RUNNING, STOPPED, STOP_TIMEOUT_S, Container,
                        shell_command)
from .engine import Engine, host_engine, podman_error
from .images import DEFAULT_IMAGE, IDLE_COMMAND, ContainerImage

__all__ = ["Containers", "Container", "ContainerImage", "Engine", "clean", "leftovers",
           "CREATED", "RUNNING", "PAUSED", "STOPPED", "ERROR", "DELETED"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
LABEL_LAB = "cloudlab.lab"
# podman ps's State -> Zun's status (as Container.status, without an inspect each)
_PS_STATUS = {"created": CREATED, "configured": CREATED, "initialized": CREATED, "running": RUNNING,
              "paused": PAUSED, "stopping": RUNNING, "exited": STOPPED, "stopped": STOPPED}


def _mem_total_mib():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def cgroup_parent(prefix, engine):
    """Name of the parent cgroup of a lab's containers: the lab's prefix, then the lab host's id."""
    return f"{prefix}containers.{engine.id}"


class Containers:
    """The lab's container service.

    Args:
        lab: the :class:`~cloudlab.lab.Lab`; its prefix names every container, image and network.
        engine: the container engine (default: the lab host's podman).
    """

    def __init__(self, lab, engine=None):
        self.lab = lab
        self.engine = engine or host_engine()
        self._lock = threading.RLock()
        self._started = False
        self._default_ready = False

    @property
    def prefix(self):
        """Prefix of this lab's containers, images and network, e.g. ``cloudlab-lab-``."""
        return self.lab.prefix

    @property
    def network(self):
        """Name of the lab network as the engine knows it (the same name as libvirt's)."""
        return self.lab.host.network

    @property
    def cgroup_parent(self):
        """The parent cgroup of this lab's containers (one directory under each cgroup hierarchy)."""
        return cgroup_parent(self.prefix, self.engine)

    def start(self):
        """Write the engine's configuration, attach the engine to the lab network, import ``busybox``.

        Raises:
            MissingPrerequisite: podman, runc or the CNI plugins are missing.
        """
        self.engine.ensure()
        host = self.lab.host
        network_mod.write(self.engine.network_dir, self.network, host.bridge, host.subnet, host.gateway,
                          self.engine.ipam_dir)
        self._started = True
        self._ensure_default_image()
        return self

    def stop(self):
        """Delete every container and image of this lab, its network and its cgroups.

        Raises:
            CloudlabError: something could not be removed (everything is tried).
        """
        _, problems = clean(self.prefix, self.engine)
        if problems:
            raise CloudlabError("some of the lab's containers could not be removed: " + "; ".join(problems),
                                fix="python -m cloudlab clean")

    # -- images ---------------------------------------------------------------------------

    def _ensure_default_image(self):
        if self._default_ready:
            return
        if not self._image_exists(DEFAULT_IMAGE):
            rootfs = self.lab.image.rootfs()
            self.import_image(DEFAULT_IMAGE, rootfs, command=IDLE_COMMAND)
        self._default_ready = True

    def _image_ref(self, image):
        """``(name, engine ref)`` of ``image`` without asking the engine (a missing one fails at run)."""
        if isinstance(image, ContainerImage):
            return image.name, image.ref
        if image == DEFAULT_IMAGE:
            self._ensure_default_image()
        if not isinstance(image, str) or not NAME_RE.match(image):
            self.get_image(image)            # raises NotFound listing the local images
        return image, images_mod.ref(self.prefix, image)

    def _image_exists(self, name):
        result = self.engine.run("image", "exists", images_mod.ref(self.prefix, name), check=False)
        return result.returncode == 0

    def list_images(self):
        """This lab's container images, by name."""
        found = []
        for entry in self.engine.json("images", "--format", "json", what="listing images"):
            found += images_mod.from_listing(self.prefix, entry)
        return sorted(found, key=lambda i: i.name)

    def get_image(self, name):
        """The image called ``name`` (``busybox`` is imported on first use).

        Raises:
            NotFound: no such image; the message lists the local ones.
        """
        if isinstance(name, ContainerImage):
            return name
        if name == DEFAULT_IMAGE:
            self._ensure_default_image()
        if isinstance(name, str) and NAME_RE.match(name):
            for image in self.list_images():
                if image.name == name:
                    return image
        names = [i.name for i in self.list_images()]
        raise NotFound(f"no container image named {name!r}",
                       fix=f"use one of the local images: {', '.join(names) or '(none)'}; or make one with "
                           "import_image() or build_image()")

    def _check_new_image(self, name):
        if not isinstance(name, str) or not NAME_RE.match(name) or name != name.lower():
            raise InvalidInput(f"image name {name!r} is not valid",
                               fix="use 1-40 lower-case letters, digits, '.', '_' or '-'")
        if self._image_exists(name):
            raise Conflict(f"a container image named {name!r} already exists",
                           fix="choose another name, or delete_image() it first")

    def import_image(self, name, source, command=None, env=None, workdir=None):
        """Make image ``name`` from a root file system: a ``.tar`` (or ``.tar.gz``) file or a folder.

        Args:
            source: path of the tarball or folder (its contents become ``/``).
            command, env, workdir: the image's default command (string or list), environment, folder.
        Raises:
            NotFound: ``source`` does not exist.
            InvalidInput: a bad name or setting.
            Conflict: the name is taken.
        """
        self._check_new_image(name)
        change_args = [a for c in images_mod.changes(command, env, workdir) for a in ("--change", c)]
        source = Path(source)
        target = images_mod.ref(self.prefix, name)
        if source.is_dir():
            tar = images_mod.scratch_tar(self.engine.root / "tmp")
            try:
                images_mod.pack_folder(source, tar)
                self.engine.run("import", "--quiet", *change_args, tar, target,
                                what=f"importing image {name} from {source}")
            finally:
                tar.unlink(missing_ok=True)
        elif source.is_file():
            self.engine.run("import", "--quiet", *change_args, source, target,
                            what=f"importing image {name} from {source}")
        else:
            raise NotFound(f"no root file system at {source}", fix="give a .tar file or a folder")
        return self.get_image(name)

    def build_image(self, name, base=DEFAULT_IMAGE, files=None, command=None, env=None, workdir=None,
                    ports=None):
        """Make image ``name``: ``base`` plus ``files``, with a new default command.

        Args:
            base: the image to start from.
            files: ``{path in the image: text | bytes | pathlib.Path}``; a key may be
                ``(path, mode)``, e.g. ``("/app/run.sh", 0o755)``.
            command: the default command (string: run by ``sh -c``; or a list).
            env, workdir: environment variables and working directory.
            ports: ports the image's program listens on (recorded as EXPOSE).
        Raises:
            NotFound: unknown base image (the message lists the local ones).
            InvalidInput: a bad name, path or setting.
            Conflict: the name is taken.
        """
        self._check_new_image(name)
        base_image = self.get_image(base)
        change_args = [a for c in images_mod.changes(command, env, workdir, ports) for a in ("--change", c)]
        archive = images_mod.files_tar(files)
        builder = f"{self.prefix}build-{name}-{os.getpid()}-{threading.get_ident() % 10000}"
        self.engine.run("create", "--name", builder, "--network", "none", base_image.ref, "true",
                        what=f"preparing the build of image {name}")
        try:
            if files:
                self.engine.run("cp", "-", f"{builder}:/", input=archive, what=f"copying files into image {name}")
            self.engine.run("commit", "--quiet", *change_args, builder, images_mod.ref(self.prefix, name),
                            what=f"committing image {name}")
        finally:
            self.engine.run("rm", "-f", builder, check=False)
        return self.get_image(name)

    def delete_image(self, name):
        """Delete image ``name``.

        Raises:
            InvalidInput: it is the default image.
            NotFound: no such image.
            Conflict: a container still uses it.
        """
        if name == DEFAULT_IMAGE:
            raise InvalidInput("the default container image cannot be deleted",
                               fix="delete images you imported or built")
        image = self.get_image(name)
        result = self.engine.run("rmi", image.ref, check=False)
        if result.returncode != 0:
            if "in use" in result.stderr or "used by" in result.stderr:
                users = [c.name for c in self.list_containers() if c.image == image.name]
                raise Conflict(f"image {name} is used by containers: {', '.join(users) or '(some)'}",
                               fix="delete those containers first")
            raise CloudlabError(f"deleting image {name} failed: {podman_error(result.stderr)}")

    # -- containers -----------------------------------------------------------------------

    def _limits(self, flavor, memory_mib, cpus):
        """(flavor name, memory MiB, cpus) from a flavor and overrides, checked against the host."""
        name = None
        if flavor is not None:
            flavor = self.lab.compute.get_flavor(flavor)
            name, memory_mib, cpus = flavor.name, memory_mib or flavor.ram_mib, cpus or flavor.vcpus
        if memory_mib is not None:
            if not isinstance(memory_mib, int) or isinstance(memory_mib, bool) or memory_mib < 6:
                raise InvalidInput(f"memory_mib={memory_mib!r} is not usable",
                                   fix="give a whole number of MiB, at least 6")
            total = _mem_total_mib()
            if memory_mib > total:
                raise QuotaExceeded(f"a memory limit of {memory_mib} MiB is more than the host's {total} MiB",
                                    fix=f"give at most {total} MiB, or a smaller flavor")
        if cpus is not None:
            if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus <= 0:
                raise InvalidInput(f"cpus={cpus!r} is not usable", fix="give a positive number, e.g. 0.5 or 1")
            if cpus > (os.cpu_count() or 1):
                raise QuotaExceeded(f"a CPU limit of {cpus} CPUs is more than the host's {os.cpu_count()}",
                                    fix=f"give at most {os.cpu_count()}")
        return name, memory_mib, cpus

    @staticmethod
    def _port_args(ports):
        args = []
        items = ports.items() if isinstance(ports, dict) else ((p, p) for p in (ports or ()))
        for container_port, host_port in items:
            for value in (container_port, host_port):
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
                    raise InvalidInput(f"port {value!r} is not a port number",
                                       fix="give {container port: host port} with whole numbers 1..65535")
            args += ["-p", f"{host_port}:{container_port}"]
        return args

    @staticmethod
    def _mount_args(mounts):
        args = []
        for host_path, target in (mounts or {}).items():
            read_only = isinstance(target, str) and target.endswith(":ro")
            target = target[:-3] if read_only else target
            if not Path(host_path).exists():
                raise NotFound(f"no file or folder {host_path} to mount", fix="create it first")
            if not isinstance(target, str) or not target.startswith("/"):
                raise InvalidInput(f"mount target {target!r} is not an absolute path", fix="e.g. '/data'")
            args += ["-v", f"{Path(host_path).resolve()}:{target}:{'ro' if read_only else 'rw'}"]
        return args

    def create_container(self, name, image=DEFAULT_IMAGE, command=None, flavor=None, memory_mib=None,
                         cpus=None, env=None, ports=None, mounts=None, network=None, workdir=None, user=None):
        """Create and start a container; returns it RUNNING (or STOPPED when its command ended at once).

        Args:
            name: letters, digits, '.', '_', '-'; the engine's name is ``prefix + name``, the hostname ``name``.
            image: a local image (see :meth:`list_images`).
            command: the main command (string for ``sh -c``, or a list); default: the image's.
            flavor: a flavor name (``m1.tiny``...) whose vCPUs and memory become cgroup limits.
            memory_mib, cpus: limits of their own (override the flavor's).
            env: environment variables (dict).
            ports: ``{container port: host port}`` published on the lab host, or a list of ports.
            mounts: ``{host path: container path}`` bind mounts (``"/path:ro"`` for read-only).
            network: None for the lab network, False for none.
            workdir: working directory of the command.
            user: user (name or uid, ``uid:gid``) the command runs as; default the image's (root).
        Raises:
            InvalidInput: a bad name, command, limit, port or mount.
            NotFound: unknown image (the message lists the local ones) or flavor.
            Conflict: a container with that name exists.
            QuotaExceeded: a memory or CPU limit beyond the host's.
            CloudlabError: the engine refused (its message is shown).
        """
        container, _ = self._run(name, image, command, flavor, memory_mib, cpus, env, ports, mounts, network,
                                 workdir, user, detach=True)
        return container

    def run_container(self, name, command, image=DEFAULT_IMAGE, flavor=None, memory_mib=None, cpus=None,
                      env=None, mounts=None, network=None, workdir=None, user=None, timeout=300):
        """Create a container, run ``command`` in it to the end, and return ``(container, result)``.

        ``podman run`` attached, as one engine command; the container stays (STOPPED)
        for its logs and status.  ``result`` is a
        :class:`~cloudlab.image.agent.CommandResult`: the command's exit status and
        output; a command that fails is an answer, not an exception.  Arguments and
        errors as :meth:`create_container`; ``timeout`` in seconds.
        """
        container, result = self._run(name, image, command, flavor, memory_mib, cpus, env, None, mounts, network,
                                      workdir, user, detach=False, timeout=timeout)
        return container, CommandResult(result.returncode, result.stdout, result.stderr)

    def _run(self, name, image, command, flavor, memory_mib, cpus, env, ports, mounts, network, workdir, user,
             detach, timeout=120):
        """``podman run`` for :meth:`create_container` (``detach``) and :meth:`run_container`."""
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"container name {name!r} is not valid",
                               fix="use 1-40 letters, digits, '.', '_' or '-', starting with a letter or digit")
        flavor_name, memory_mib, cpus = self._limits(flavor, memory_mib, cpus)
        argv = shell_command(command) if command is not None else []
        image_name, image_ref = self._image_ref(image)
        args = ["run", *(["-d"] if detach else []), "--name", self.prefix + name, "--hostname", name,
                "--label", f"{LABEL_LAB}={self.lab.name}", "--label", f"cloudlab.name={name}",
                "--label", f"cloudlab.image={image_name}", "--label", f"cloudlab.flavor={flavor_name or ''}",
                "--cgroup-parent", "/" + self.cgroup_parent, "--stop-timeout", str(STOP_TIMEOUT_S)]
        if network is False:
            args += ["--network", "none"]
        else:
            host = self.lab.host
            if network not in (None, self.network):
                raise NotFound(f"no container network named {network!r}",
                               fix=f"use the lab network (network=None) or network=False")
            args += ["--network", self.network, "--dns", host.gateway]
        if memory_mib is not None:
            # no swap beyond the limit: the limit is what the container gets
            args += ["--memory", f"{memory_mib}m", "--memory-swap", f"{memory_mib}m"]
        if cpus is not None:
            args += ["--cpus", f"{cpus:g}"]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        if workdir:
            args += ["-w", workdir]
        if user is not None:
            args += ["--user", str(user)]
        args += self._port_args(ports) + self._mount_args(mounts)
        args += [image_ref, *argv]
        # one engine call: a taken name or a missing image is the engine's answer, turned into ours
        # (a check beforehand would cost a podman command each, and race with other callers)
        result = self.engine.run(*args, check=False, timeout=timeout)
        # attached, a non-zero status is the command's own unless podman says it failed (125)
        if result.returncode != 0 and (detach or (result.returncode in (PODMAN_FAILED, 126, 127) and
                                                  "Error:" in result.stderr)):
            message = podman_error(result.stderr)
            port_taken = "address already in use" in message or "port is already allocated" in message
            if "already in use" in message and not port_taken:
                raise Conflict(f"a container named {name!r} already exists",
                               fix="choose another name, or delete the existing container first")
            self.engine.run("rm", "-f", "-t", "0", self.prefix + name, check=False)   # nothing half-made
            if "image not known" in message or "no such image" in message.lower():
                self._default_ready = False
                self.get_image(image_name)              # raises NotFound listing the local images
            if "executable file" in message or "no such file or directory" in message:
                raise InvalidInput(f"container {name}: the command cannot run in image {image_name}: "
                                   f"{message}", fix="check the command's path inside the image")
            if port_taken:
                raise Conflict(f"container {name}: a published port is taken: {message}",
                               fix="choose another host port")
            raise CloudlabError(f"the engine did not create container {name}: {message}",
                                fix="python -m cloudlab doctor")
        return Container(self, name), result

    def _exists(self, name):
        return self.engine.run("container", "exists", self.prefix + name, check=False).returncode == 0

    def list_containers(self):
        """This lab's containers, by name."""
        entries = self.engine.json("ps", "-a", "--format", "json", "--filter", f"label={LABEL_LAB}={self.lab.name}",
                                   what="listing containers")
        names = []
        for entry in entries:
            for podman_name in entry.get("Names") or []:
                if podman_name.startswith(self.prefix) and not podman_name.startswith(self.prefix + "build-"):
                    names.append(podman_name[len(self.prefix):])
        return [Container(self, n) for n in sorted(names)]

    def statuses(self):
        """``{name: status}`` of every container of this lab, from one engine call (RUNNING, STOPPED ...)."""
        entries = self.engine.json("ps", "-a", "--format", "json", "--filter", f"label={LABEL_LAB}={self.lab.name}",
                                   what="listing containers")
        found = {}
        for entry in entries:
            for podman_name in entry.get("Names") or []:
                if podman_name.startswith(self.prefix):
                    found[podman_name[len(self.prefix):]] = _PS_STATUS.get(entry.get("State"), ERROR)
        return found

    def get_container(self, name):
        """The container called ``name``.

        Raises:
            NotFound: no such container; the message lists this lab's containers.
        """
        if isinstance(name, Container):
            return name
        if isinstance(name, str) and NAME_RE.match(name) and self._exists(name):
            return Container(self, name)
        names = [c.name for c in self.list_containers()]
        raise NotFound(f"no container named {name!r}",
                       fix=f"use one of: {', '.join(names)}" if names else "create one with create_container()")

    def delete_container(self, container):
        """Delete a container, stopping it at once if it runs (SIGKILL: it is going away).

        Raises:
            NotFound: no such container.
        """
        container = self.get_container(container)
        self.engine.run("rm", "-f", "-t", "0", container.podman_name, what=f"deleting container {container.name}")
        container._deleted = True

    def __repr__(self):
        return f"<Containers of lab {self.lab.name!r}>"


# -- clean-up and leftovers (used by cloudlab.host) -----------------------------------------

def _lab_items(prefix, engine):
    """(containers, images, network files, cgroup dirs) of ``prefix`` in ``engine``, without creating anything."""
    if not engine.root.is_dir() or not (engine.root / "containers.conf").exists():
        return [], [], [], []
    containers, image_refs = [], []
    try:
        for entry in engine.json("ps", "-a", "--format", "json"):
            containers += [n for n in entry.get("Names") or [] if n.startswith(prefix)]
        for entry in engine.json("images", "--format", "json"):
            image_refs += [n for n in entry.get("Names") or []
                           if n.startswith(f"{images_mod.REGISTRY}/{prefix}")]
    except CloudlabError:
        pass        # no podman: nothing of it can be left
    networks = sorted(engine.network_dir.glob(f"{prefix}*.conflist")) if engine.network_dir.is_dir() else []
    cgroups = kernel.matching_dirs(prefix, f"containers.{engine.id}")
    return containers, image_refs, networks, cgroups


def clean(prefix, engine=None):
    """Remove the containers, images, networks and cgroups whose names start with ``prefix``.

    Only those of ``engine`` (default: this lab host's): other lab hosts (other
    network namespaces) have engines of their own.

    Returns:
        ``(removed, problems)``: descriptions of what went and of what could not be removed.
    """
    engine = engine or host_engine()
    containers, image_refs, networks, cgroups = _lab_items(prefix, engine)
    removed, problems = [], []
    for what, args, names in (("containers", ("rm", "-f", "-t", "0"), containers),
                              ("images", ("rmi", "-f"), image_refs)):
        if not names:
            continue
        try:
            result = engine.run(*args, *names, check=False)
        except CloudlabError as exc:        # the lab host's namespace is gone, podman is missing...
            problems.append(f"{what} {', '.join(names)}: {exc.message}")
            continue
        if result.returncode != 0:
            problems.append(f"{what} {', '.join(names)}: {podman_error(result.stderr)}")
        else:
            kind = "container" if what == "containers" else "container image"
            removed += [f"{kind} {n}" for n in names]
    for path in networks:
        network_mod.remove(engine.network_dir, path.name[:-len(".conflist")], engine.ipam_dir)
        removed.append(f"container network {path.name[:-len('.conflist')]}")
    for path in cgroups:
        # conmon leaves its cgroup a moment after the container is gone
        for _ in range(40):
            if kernel.remove_tree(path):
                removed.append(f"cgroup {path}")
                break
            time.sleep(0.05)
        else:
            problems.append(f"cgroup {path} still holds processes")
    return removed, problems


def leftovers(prefix):
    """What of the lab's containers is still here (this lab host's engine): containers, images, networks, cgroups."""
    engine = host_engine()
    containers, image_refs, networks, cgroups = _lab_items(prefix, engine)
    found = [f"container {n}" for n in containers] + [f"container image {r}" for r in image_refs]
    found += [f"container network {p.name}" for p in networks] + [f"cgroup {p}" for p in cgroups]
    return found
