"""A second volume backend: the same volume files, served over the lab network by NBD.

In a three-node layout volumes live on a *storage node* and compute nodes reach
them over the network (Cinder's LVM driver exports them with iSCSI; Ceph RBD
with its own protocol).  Here the storage side is ``qemu-storage-daemon``,
QEMU's block layer without a virtual machine: it opens a volume's qcow2 file and
serves it as an NBD (Network Block Device) export on the lab network's address,
and the hypervisor's QEMU connects to it with its own NBD client, so no kernel
module is needed on either side.

The daemon is started with the backend and driven over QMP (QEMU's JSON control
protocol, a unix socket): ``initialize_connection`` adds the volume's file as a
block node (``blockdev-add``) and exports it (``block-export-add``); the
connection info says ``driver_volume_type: nbd`` with the address, port and
export name; ``terminate_connection`` removes the export once no server uses it.
Volumes are created, copied and snapshotted as files, exactly as
:class:`~cloudlab.block_storage.backend.FileBackend` does.  A multi-attach volume
needs no raw format here (one daemon opens the file for every client), and an
attached volume cannot grow: an NBD client learns a disk's size only when it
connects, so ``online_extend`` is False.
"""

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from ..errors import CloudlabError, MissingPrerequisite, ResourceTimeout
from ..host import ownership
from ..process import stop_process
from .backend import FileBackend

NBD_PORT = 10809
START_TIMEOUT_S = 10.0


class QMP:
    """A QMP client on a unix socket: one command at a time, replies matched in order.

    Args:
        path: the monitor's socket.
    """

    def __init__(self, path, timeout=10.0):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(str(path))
        self._file = self._sock.makefile("rb")
        self._lock = threading.Lock()
        self._read()                                  # the greeting: {"QMP": {...}}
        self.command("qmp_capabilities")

    def _read(self):
        while True:
            line = self._file.readline()
            if not line:
                raise CloudlabError("qemu-storage-daemon closed its monitor")
            message = json.loads(line)
            if "event" not in message:                 # events come unasked; skip them
                return message

    def command(self, _command, **arguments):
        """Run ``_command`` with ``arguments``; returns its ``return`` value.

        Raises:
            CloudlabError: the daemon answered with an error (its description is kept).
        """
        with self._lock:
            request = {"execute": _command}
            if arguments:
                request["arguments"] = arguments
            try:
                self._sock.sendall(json.dumps(request).encode() + b"\n")
                reply = self._read()
            except OSError as exc:      # the daemon is gone (its node lost power, say)
                raise CloudlabError(f"qemu-storage-daemon did not answer {_command}: {exc}",
                                    fix="start its node again (lab.nodes[NAME].start()), or lab.stop() and start "
                                        "the lab again") from None
        if "error" in reply:
            raise CloudlabError(f"qemu-storage-daemon refused {_command}: {reply['error'].get('desc')}")
        return reply.get("return")

    def close(self):
        """Close the connection."""
        for item in (self._file, self._sock):
            try:
                item.close()
            except OSError:
                pass


class NbdBackend(FileBackend):
    """Volume files served as NBD exports by a qemu-storage-daemon on the lab network.

    Args:
        lab: the :class:`~cloudlab.lab.Lab`; the daemon binds its network's gateway address
            inside its network namespace.
        port: the first TCP port to try (NBD's own 10809; the next ones when it is taken).
    """

    name = "nbd"
    online_extend = False

    def __init__(self, lab, port=NBD_PORT):
        super().__init__(lab)
        self.lab = lab
        self.first_port = port
        self.port = None
        self.address = None
        self._proc = None
        self._qmp = None
        self._lock = threading.Lock()
        self._clients = {}          # volume id -> set of server ids using its export
        self._node = self._ns = None    # where the daemon runs: a storage node, or the lab host's namespace
        self.monitor_path = self.folder / f"{self.prefix}nbd.qmp"

    def start(self):
        """Start the daemon on the lab network's gateway address.

        Raises:
            MissingPrerequisite: qemu-storage-daemon is not installed.
            CloudlabError: it did not start (its log is quoted).
        """
        if self._proc is not None and self._proc.poll() is None:
            return
        if len(self.lab.topology.nodes) > 1:
            # a multi-node layout: the storage node serves the volumes on its management address,
            # and the compute nodes' QEMU reach it across the management network
            node = self.lab.nodes.storage
            self.address, ns = node.address, node.netns
        else:
            node, host = None, self.lab.host
            self.address, ns = host.gateway, host.netns
        self._node, self._ns = node, ns
        self._launch(range(self.first_port, self.first_port + 10))

    def _launch(self, ports):
        """Start the daemon on the first of ``ports`` that is free, and connect to its monitor."""
        from ..host import netns
        node, ns, ports = self._node, self._ns, list(ports)
        log = self.folder / f"{self.prefix}nbd.log"
        for port in ports:
            self.monitor_path.unlink(missing_ok=True)
            args = [
                "qemu-storage-daemon",
                "--chardev", f"socket,path={self.monitor_path},server=on,wait=off,id=monitor",
                "--monitor", "chardev=monitor",
                "--nbd-server", f"addr.type=inet,addr.host={self.address},addr.port={port}"]
            try:
                log.unlink(missing_ok=True)
                if node is not None:          # a process of the storage node (all its namespaces)
                    self._proc = node.popen(args, log)
                else:
                    with open(log, "wb") as out:
                        self._proc = subprocess.Popen(netns.enter_args(ns) + args, stdout=out,
                                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                      env=ownership.child_env())
            except FileNotFoundError:
                raise MissingPrerequisite("qemu-storage-daemon is not installed",
                                          fix="run `make lab`, or `sudo apt-get install qemu-system-x86`") from None
            deadline = time.monotonic() + START_TIMEOUT_S
            while self._proc.poll() is None and not self.monitor_path.exists():
                if time.monotonic() > deadline:
                    stop_process(self._proc)
                    raise ResourceTimeout("qemu-storage-daemon did not open its monitor in time",
                                          fix=f"see {log}")
                time.sleep(0.02)
            if self._proc.poll() is None:
                self.port = port
                break
            if "Address already in use" not in log.read_text(errors="replace"):
                raise CloudlabError(f"qemu-storage-daemon did not start: {log.read_text(errors='replace')[-400:]}")
        else:
            raise CloudlabError(f"no free port for NBD on {self.address} on ports {ports[0]}-{ports[-1]}",
                                fix="stop what listens there (lab.stop() of another lab)")
        self._qmp = QMP(self.monitor_path)
        log.unlink(missing_ok=True)

    def resume(self):
        """Start the daemon again after its node's power cut: the same port, the same exports.

        A storage node starts its target again when it boots, as Cinder's node starts its
        iSCSI target with the volumes it exported.  The hypervisors' QEMU NBD clients
        connect again on their guest's next read or write (what was asked while the
        daemon was down failed with an I/O error in the guest, as a lost iSCSI session's
        requests do).  Does nothing while the daemon runs, or once the backend stopped.
        """
        with self._lock:
            if self._proc is None or self._proc.poll() is None:
                return self
            if self._qmp is not None:
                self._qmp.close()
                self._qmp = None
            # the port the guests' QEMU knows: the connection info they were given names it
            self._launch([self.port])
            for volume_id in self._clients:
                self._export(volume_id)
        return self

    def stop(self):
        """Stop the daemon (its exports end with it)."""
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None
        self.monitor_path.unlink(missing_ok=True)
        self._clients.clear()

    @property
    def pid(self):
        """The daemon's process id, or None."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return getattr(self._proc, "service_pid", self._proc.pid)

    @staticmethod
    def export_name(volume_id):
        """The NBD export's name of a volume."""
        return f"volume-{volume_id}"

    @staticmethod
    def node_name(volume_id):
        """The daemon's block node of a volume (QEMU allows 31 characters, starting with a letter)."""
        return "v" + volume_id.replace("-", "")[:30]

    def exports(self):
        """Names of the exports the daemon serves now (``query-block-exports``)."""
        return sorted(e["id"] for e in self._qmp.command("query-block-exports"))

    def initialize_connection(self, volume_id, connector):
        """Export the volume (once for all its clients) and say where: ``driver_volume_type: nbd``."""
        path = self.path(volume_id)
        if not path.exists():
            raise CloudlabError(f"the file of volume {volume_id} is missing ({path.name})")
        name = self.export_name(volume_id)
        node = self.node_name(volume_id)
        with self._lock:
            users = self._clients.setdefault(volume_id, set())
            if not users:
                self._export(volume_id)
            users.add(connector.get("server_id"))
        return {"driver_volume_type": "nbd",
                "data": {"host": self.address, "port": self.port, "export": name, "format": "raw"}}

    def _export(self, volume_id):
        """Open the volume's file as a block node of the daemon and export it (writable) by its name."""
        path, name, node = self.path(volume_id), self.export_name(volume_id), self.node_name(volume_id)
        self._qmp.command("blockdev-add", **{"driver": path.suffix[1:], "node-name": node,
                                             "file": {"driver": "file", "filename": str(path)}})
        try:
            self._qmp.command("block-export-add", type="nbd", id=name, **{"node-name": node},
                              name=name, writable=True)
        except CloudlabError:
            self._qmp.command("blockdev-del", **{"node-name": node})
            raise

    def terminate_connection(self, volume_id, connector):
        """Remove the volume's export once its last client has gone."""
        with self._lock:
            users = self._clients.get(volume_id)
            if not users:
                return
            users.discard(connector.get("server_id"))
            if users:
                return
            del self._clients[volume_id]
            name = self.export_name(volume_id)
            self._qmp.command("block-export-del", id=name)
            # the export goes away asynchronously; its node can be deleted once it has
            deadline = time.monotonic() + 5
            while name in self.exports() and time.monotonic() < deadline:
                time.sleep(0.02)
            self._qmp.command("blockdev-del", **{"node-name": self.node_name(volume_id)})

    def leftovers(self):
        """Files of this backend and its daemon, if still running."""
        found = super().leftovers()
        if self.pid:
            found.append(f"process {self.pid}: qemu-storage-daemon")
        return found


def leftovers(home, prefix):
    """qemu-storage-daemon processes of any lab (their monitor socket is a prefixed file under ``home``)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            raw = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        argv = raw.split(b"\0")
        if argv and argv[0].endswith(b"qemu-storage-daemon"):
            text = raw.replace(b"\0", b" ").decode(errors="replace")
            if str(home) in text and f"/{prefix}" in text:
                # the same line as the host's own scan writes, so the two do not repeat each other
                found.append(f"process {proc.name}: {text[:120]}")
    return found
