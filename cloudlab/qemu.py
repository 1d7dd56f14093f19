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

from .agent import AGENT_CHANNEL
from .errors import MissingPrerequisite, ResourceTimeout
from .image import READY_MARKER

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


def raw_boot(image, accel="tcg", timeout=10.0, memory_mib=128, keep_console=None):
    """Boot ``image`` with plain QEMU and return the seconds until its ready marker.

    Args:
        image: an :class:`~cloudlab.image.Image`.
        accel: ``tcg`` (emulation) or ``kvm``.
        timeout: seconds to wait for the marker.
        memory_mib: guest memory.
        keep_console: optional list that receives every console line.
    Raises:
        ResourceTimeout: no marker in time; the message shows the last console lines.
    """
    scratch = Path(tempfile.mkdtemp(prefix="cloudlab-rawboot-"))
    overlay = scratch / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", image.format,
                    "-b", str(Path(image.disk).resolve()), str(overlay)], check=True)
    args = [
        qemu_binary(), "-nodefaults", "-no-user-config", "-display", "none",
        "-machine", "q35", "-accel", accel, "-cpu", "max" if accel == "tcg" else "host",
        "-m", str(memory_mib), "-smp", "1",
        "-kernel", image.kernel, "-initrd", image.initrd, "-append", image.cmdline,
        "-drive", f"file={overlay},format=qcow2,if=virtio",
        "-device", "virtio-serial",
        "-chardev", f"socket,id=agent,path={scratch / 'agent.sock'},server=on,wait=off",
        "-device", f"virtserialport,chardev=agent,name={AGENT_CHANNEL}",
        "-serial", "stdio", "-monitor", "none", "-nic", "none",
    ]
    lines = deque(maxlen=15)
    ready = threading.Event()
    started = time.monotonic()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    elapsed = [None]

    def reader():
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            lines.append(line)
            if keep_console is not None:
                keep_console.append(line)
            if line.strip() == READY_MARKER and not ready.is_set():
                elapsed[0] = time.monotonic() - started
                ready.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        if not ready.wait(timeout):
            shown = "\n".join(lines) or "(nothing on the console)"
            raise ResourceTimeout(f"raw QEMU boot ({accel}) printed no {READY_MARKER!r} within "
                                  f"{timeout:g} s; last console lines:\n{shown}")
        return elapsed[0]
    finally:
        # our own QEMU, by its PID
        proc.kill()
        proc.wait()
        thread.join(2)
        proc.stdout.close()
        shutil.rmtree(scratch, ignore_errors=True)


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
