"""A container (Zun's word, 컨테이너): one podman container of the lab, read live from the engine.

A :class:`Container` holds only the container's name; its status, process and
address are read from ``podman inspect`` each time they are asked for, as a
server's are read from libvirt.  Status names are those of OpenStack Zun:
CREATED, RUNNING, PAUSED, STOPPED, ERROR, DELETED.

``exec`` runs a command in the running container's namespaces (``podman exec``:
runc enters them with ``setns``, no agent and no network are needed) and
returns its exit status, output and errors; a command that fails inside is an
answer, not an exception.
"""

import json
import shlex
import subprocess
import time

from ..errors import CloudlabError, Conflict, InvalidInput, NotFound, ResourceTimeout
from ..image.agent import CommandResult
from . import kernel
from .engine import podman_error

CREATED, RUNNING, PAUSED, STOPPED, ERROR, DELETED = (
    "CREATED", "RUNNING", "PAUSED", "STOPPED", "ERROR", "DELETED")
# podman's State.Status -> Zun's status
_STATUS = {"created": CREATED, "configured": CREATED, "initialized": CREATED, "running": RUNNING,
           "paused": PAUSED, "stopping": RUNNING, "exited": STOPPED, "stopped": STOPPED}
# podman exec's own failures (not the command's): 125 podman, 126 cannot execute, 127 not found,
# 255 not running
PODMAN_FAILED = 125
STOP_TIMEOUT_S = 5


def shell_command(command):
    """The argument list for ``command``: a string runs under ``sh -c``, a list as it is.

    Raises:
        InvalidInput: the command is empty or not a string or list of strings.
    """
    if isinstance(command, str):
        if not command.strip():
            raise InvalidInput("the command is empty", fix="give a shell command, e.g. 'uname -r'")
        return ["sh", "-c", command]
    if isinstance(command, (list, tuple)) and command and all(isinstance(a, (str, int)) for a in command):
        return [str(a) for a in command]
    raise InvalidInput(f"command {command!r} is not usable", fix="give a shell command line or a list of arguments")


class Container:
    """A container of the lab's container service; get one from ``containers.create_container()``.

    Attributes:
        name: the name it was created with (podman's name is ``prefix + name``).
        podman_name: the engine's name for it.
    """

    def __init__(self, service, name):
        self._service = service
        self.name = name
        self.podman_name = service.prefix + name
        self._deleted = False

    @property
    def _engine(self):
        return self._service.engine

    def inspect(self):
        """``podman inspect`` of the container, as a dict.

        Raises:
            NotFound: the container no longer exists.
        """
        result = self._engine.run("container", "inspect", self.podman_name, check=False,
                                  what=f"inspecting container {self.name}")
        if result.returncode != 0:
            if "no such" in result.stderr.lower():
                self._deleted = True
                raise NotFound(f"no container named {self.name!r}",
                               fix="list them with containers.list_containers()")
            raise CloudlabError(f"inspecting container {self.name} failed: {podman_error(result.stderr)}")
        return json.loads(result.stdout)[0]

    # -- what it is -------------------------------------------------------------------

    @property
    def id(self):
        """The engine's 64-hex id of the container."""
        return self.inspect()["Id"]

    @property
    def status(self):
        """Zun's status: CREATED, RUNNING, PAUSED, STOPPED, ERROR or DELETED."""
        try:
            state = self.inspect()["State"]
        except NotFound:
            return DELETED
        if state.get("Error") and state.get("Status") != "running":
            return ERROR
        return _STATUS.get(state.get("Status"), ERROR)

    @property
    def exit_code(self):
        """Exit status of the container's main command (meaningful once it is STOPPED)."""
        return self.inspect()["State"].get("ExitCode")

    @property
    def pid(self):
        """The host's PID of the container's first process (its PID 1 inside); None when not running."""
        pid = self.inspect()["State"].get("Pid") or 0
        return pid or None

    @property
    def image(self):
        """The name of the image it was created from (without the lab's prefix)."""
        info = self.inspect()
        return (info["Config"].get("Labels") or {}).get("cloudlab.image") or info.get("ImageName", "?")

    @property
    def command(self):
        """The main command, as a list of arguments."""
        config = self.inspect()["Config"]
        return list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])

    @property
    def flavor(self):
        """Name of the flavor its limits came from, or None."""
        return (self.inspect()["Config"].get("Labels") or {}).get("cloudlab.flavor") or None

    @property
    def addresses(self):
        """IP addresses by network: ``{network: [address]}`` (empty when not running or without a network)."""
        networks = self.inspect().get("NetworkSettings", {}).get("Networks") or {}
        return {name: [net["IPAddress"]] for name, net in networks.items() if net.get("IPAddress")}

    @property
    def address(self):
        """The container's address on the lab network, or None."""
        found = self.addresses.get(self._service.network)
        return found[0] if found else None

    @property
    def ports(self):
        """Published ports: ``{"80/tcp": ("0.0.0.0", 8080), ...}`` (container port -> host address and port)."""
        ports = self.inspect().get("NetworkSettings", {}).get("Ports") or {}
        out = {}
        for port, bindings in ports.items():
            for binding in bindings or []:
                out[port] = (binding.get("HostIp") or "0.0.0.0", int(binding["HostPort"]))
        return out

    # -- what the host's kernel sees ----------------------------------------------------

    def _require_pid(self):
        pid = self.pid
        if not pid:
            raise Conflict(f"container {self.name} is {self.status}; only a running container has a process",
                           fix="container.start()")
        return pid

    def namespaces(self):
        """The container process's namespaces against the host's: ``{kind: (inode, host inode, shared)}``.

        Raises:
            Conflict: the container is not running.
        """
        return kernel.compare_namespaces(self._require_pid())

    def cgroup_limits(self):
        """The memory and CPU limits the host's kernel enforces (see :func:`cloudlab.containers.kernel.limits`).

        Raises:
            Conflict: the container is not running.
        """
        return kernel.limits(self._require_pid())

    # -- commands, output -----------------------------------------------------------------

    def exec(self, command, input=None, timeout=60, env=None, workdir=None, user=None):
        """Run a command inside the running container and return its :class:`~cloudlab.image.agent.CommandResult`.

        Args:
            command: a shell command line (run by ``sh -c``) or a list of arguments.
            input: text or bytes for the command's standard input.
            timeout: seconds to wait for it.
            env: extra environment variables (dict).
            workdir, user: working directory and user inside the container.
        Raises:
            Conflict: the container is not running.
            InvalidInput: an empty command.
            ResourceTimeout: it did not finish in time.
        """
        argv = shell_command(command)
        args = ["exec"]
        if input is not None:
            args.append("-i")
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        if workdir:
            args += ["-w", workdir]
        if user:
            args += ["-u", str(user)]
        args += [self.podman_name, *argv]
        if isinstance(input, str):
            input = input.encode()
        try:
            result = subprocess.run(self._engine.argv(*args), input=input, capture_output=True,
                                    env=self._engine.env, timeout=timeout, cwd=self._engine.cwd,
                                    stdin=subprocess.DEVNULL if input is None else None)
        except subprocess.TimeoutExpired:
            raise ResourceTimeout(f"{shlex.join(argv)!r} did not finish within {timeout} s in container {self.name}",
                                  fix="give exec() a larger timeout") from None
        stderr = result.stderr.decode(errors="replace")
        if result.returncode in (PODMAN_FAILED, 126, 127, 255) and \
                any(line.startswith("Error:") for line in stderr.splitlines()):
            # podman itself refused (not running, no such executable), not the command
            status = self.status
            if status != RUNNING:
                raise Conflict(f"container {self.name} is {status}; commands run only in a RUNNING container",
                               fix="container.start()")
            if result.returncode != PODMAN_FAILED:
                return CommandResult(result.returncode, result.stdout.decode(errors="replace"), stderr)
            raise CloudlabError(f"podman exec in container {self.name} failed: {podman_error(stderr)}")
        return CommandResult(result.returncode, result.stdout.decode(errors="replace"), stderr)

    def run(self, command, timeout=60, input=None):
        """The same as :meth:`exec` (so code written for a server's ``run`` works on a container)."""
        return self.exec(command, input=input, timeout=timeout)

    def logs(self, tail=None):
        """What the container's main command wrote (standard output and error, in order).

        Args:
            tail: only the last ``tail`` lines.
        """
        args = ["logs"] + (["--tail", str(int(tail))] if tail is not None else []) + [self.podman_name]
        result = subprocess.run(self._engine.argv(*args), capture_output=False, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=self._engine.env, timeout=60, cwd=self._engine.cwd)
        text = result.stdout.decode(errors="replace")
        if result.returncode != 0:
            if "no such" in text.lower():
                raise NotFound(f"no container named {self.name!r}", fix="list them with containers.list_containers()")
            raise CloudlabError(f"reading the logs of container {self.name} failed: {podman_error(text)}")
        return text

    # -- lifecycle -------------------------------------------------------------------------

    def wait(self, status=RUNNING, timeout=30.0):
        """Wait until the container has ``status``; returns the container.

        Raises:
            ResourceTimeout: not reached in time (the message shows the last log lines).
        """
        deadline = time.monotonic() + timeout
        while True:
            current = self.status
            if current == status:
                return self
            if time.monotonic() >= deadline:
                raise ResourceTimeout(f"container {self.name} did not become {status} within {timeout:g} s "
                                      f"(it is {current}); last log lines:\n{self.logs(tail=10) or '(none)'}",
                                      fix="read container.logs()")
            time.sleep(0.05)

    def wait_for_exit(self, timeout=60):
        """Wait until the main command has ended and return its exit status (``podman wait``).

        Raises:
            ResourceTimeout: it still runs after ``timeout`` seconds.
        """
        try:
            result = subprocess.run(self._engine.argv("wait", self.podman_name), capture_output=True, text=True,
                                    env=self._engine.env, timeout=timeout, cwd=self._engine.cwd)
        except subprocess.TimeoutExpired:
            raise ResourceTimeout(f"container {self.name}'s command still runs after {timeout} s",
                                  fix="give a longer timeout, or container.stop() it") from None
        if result.returncode != 0:
            if "no such" in result.stderr.lower():
                raise NotFound(f"no container named {self.name!r}", fix="list them with containers.list_containers()")
            raise CloudlabError(f"waiting for container {self.name} failed: {podman_error(result.stderr)}")
        return int(result.stdout.strip().splitlines()[-1])

    def stop(self, timeout=STOP_TIMEOUT_S):
        """Stop the container: SIGTERM to its PID 1, SIGKILL after ``timeout`` seconds.

        The kernel delivers to a namespace's PID 1 only the signals it has a handler
        for, so a PID 1 that ignores SIGTERM is killed when the time is up.
        Stopping a STOPPED container does nothing.
        """
        if self.status in (RUNNING, PAUSED):
            self._engine.run("stop", "-t", str(int(timeout)), self.podman_name, timeout=timeout + 60,
                             what=f"stopping container {self.name}")
        return self

    def kill(self, signal="KILL"):
        """Send ``signal`` to the container's main process from outside (as a crash or the OOM killer would).

        Unlike a signal sent from inside, the kernel delivers this one to the
        namespace's PID 1 whether or not it has a handler.

        Raises:
            Conflict: the container is not running.
        """
        self._require_pid()
        self._engine.run("kill", "--signal", str(signal), self.podman_name, what=f"killing container {self.name}")
        return self

    def start(self):
        """Start a STOPPED or CREATED container again (its main command runs anew, its files are kept).

        Raises:
            Conflict: it is already running.
        """
        status = self.status
        if status == RUNNING:
            raise Conflict(f"container {self.name} is already running", fix="container.stop() first")
        if status == DELETED:
            raise NotFound(f"container {self.name} was deleted", fix="create it again")
        self._engine.run("start", self.podman_name, what=f"starting container {self.name}")
        return self

    def delete(self):
        """Delete the container (stopping it at once if it runs): its process, files and address go."""
        self._service.delete_container(self)

    def __repr__(self):
        return f"<Container {self.name} {self.status}>"
