"""Boot an image with a bare ``qemu-system-x86_64``, no libvirt in between.

Two users: the lab host, which decides between KVM and emulation by *booting*
(on some machines /dev/kvm exists but a guest never gets past its first
instructions, see HOST.md), and the boot benchmark, which compares the compute
service against this raw boot of the same kernel, initramfs and disk.

The guest is the same as a server's: direct kernel boot, a throw-away qcow2
overlay on the image's disk, and the agent's virtio-serial port (its init prints
the ready marker only once the agent holds that port).  The serial console is
read from QEMU's stdout; the boot counts from process start to the marker line.
"""

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from ..image.agent import AGENT_CHANNEL, Agent
from ..errors import MissingPrerequisite, ResourceTimeout
from ..image import READY_MARKER

QEMU = "qemu-system-x86_64"


def qemu_binary():
    """Path of qemu-system-x86_64.

    Raises:
        MissingPrerequisite: QEMU is not installed.
    """
    path = shutil.which(QEMU)
    if not path:
        raise MissingPrerequisite(f"{QEMU} is not installed",
                                  fix="run `make lab`, or `sudo apt-get install qemu-system-x86`")
    return path


def qemu_version():
    """QEMU's version line, e.g. ``QEMU emulator version 7.2.22``."""
    out = subprocess.run([qemu_binary(), "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown"


class RawGuest:
    """One guest under plain QEMU, with its console read live and its agent reachable.

    Args:
        image: an :class:`~cloudlab.image.Image`.
        accel: ``tcg`` (emulation) or ``kvm``.
        memory_mib: guest memory.
    """

    def __init__(self, image, accel="tcg", memory_mib=128):
        self.image = image
        self.accel = accel
        self.memory_mib = memory_mib
        self.console = deque(maxlen=200)
        self.ready_after = None
        self._ready = threading.Event()
        self._proc = None
        self._scratch = None

    @property
    def agent(self):
        """An :class:`~cloudlab.image.agent.Agent` for this guest."""
        return Agent(self._scratch / "agent.sock")

    def start(self):
        """Start QEMU; returns at once (see :meth:`wait_ready`)."""
        self._scratch = Path(tempfile.mkdtemp(prefix="cloudlab-rawboot-"))
        overlay = self._scratch / "disk.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", self.image.format,
                        "-b", str(Path(self.image.disk).resolve()), str(overlay)], check=True)
        args = [
            qemu_binary(), "-nodefaults", "-no-user-config", "-display", "none",
            "-machine", "q35", "-accel", self.accel, "-cpu", "qemu64" if self.accel == "tcg" else "host",   # as domain.cpu_for
            "-m", str(self.memory_mib), "-smp", "1",
            "-kernel", self.image.kernel, "-initrd", self.image.initrd, "-append", self.image.cmdline,
            "-drive", f"file={overlay},format=qcow2,if=virtio",
            "-device", "virtio-serial",
            "-chardev", f"socket,id=agent,path={self._scratch / 'agent.sock'},server=on,wait=off",
            "-device", f"virtserialport,chardev=agent,name={AGENT_CHANNEL}",
            "-serial", "stdio", "-monitor", "none", "-nic", "none",
        ]
        started = time.monotonic()
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT)

        def reader():
            for raw in self._proc.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                self.console.append(line)
                if line.strip() == READY_MARKER and not self._ready.is_set():
                    self.ready_after = time.monotonic() - started
                    self._ready.set()

        self._thread = threading.Thread(target=reader, daemon=True)
        self._thread.start()
        return self

    def wait_ready(self, timeout=10.0):
        """Seconds from start to the ready marker.

        Raises:
            ResourceTimeout: no marker in time; the message shows the last console lines.
        """
        if not self._ready.wait(timeout):
            shown = "\n".join(list(self.console)[-15:]) or "(nothing on the console)"
            raise ResourceTimeout(f"raw QEMU boot ({self.accel}) printed no {READY_MARKER!r} within "
                                  f"{timeout:g} s; last console lines:\n{shown}")
        return self.ready_after

    def stop(self):
        """Kill our QEMU (by its PID) and remove its scratch folder."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._thread.join(2)
            self._proc.stdout.close()
            self._proc = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def raw_boot(image, accel="tcg", timeout=10.0, memory_mib=128):
    """Boot ``image`` with plain QEMU and return the seconds until its ready marker.

    Args:
        image: an :class:`~cloudlab.image.Image`.
        accel: ``tcg`` (emulation) or ``kvm``.
        timeout: seconds to wait for the marker.
        memory_mib: guest memory.
    Raises:
        ResourceTimeout: no marker in time; the message shows the last console lines.
    """
    with RawGuest(image, accel, memory_mib) as guest:
        return guest.wait_ready(timeout)


def kvm_usable(image, timeout=8.0):
    """True when a KVM guest of ``image`` reaches its ready marker within ``timeout``.

    /dev/kvm can exist and accept ioctls while guests hang (nested virtualization
    that does not work), so only a boot tells.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        raw_boot(image, accel="kvm", timeout=timeout)
        return True
    except ResourceTimeout:
        return False
