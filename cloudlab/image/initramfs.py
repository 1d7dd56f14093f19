"""Write a Linux initramfs: the "newc" cpio archive the kernel unpacks into its first root.

The format is a 110-byte ASCII header per entry (magic ``070701`` and thirteen
8-digit hex fields), the NUL-terminated name and the data, each padded to four
bytes, ending with an entry named ``TRAILER!!!`` (see the kernel's
Documentation/driver-api/early-userspace/buffer-format.rst).  Writing it here
instead of running ``cpio`` lets a user without root put device nodes such as
``/dev/console`` in the archive, and gives byte-identical archives for identical
inputs (times and owners are fixed), so the image cache key means something.
"""

import stat

MAGIC = b"070701"


class Archive:
    """An initramfs being assembled in memory; ``write(path)`` stores it.

    Entries are kept in insertion order; parents must be added before children,
    as the kernel creates them in that order.
    """

    def __init__(self):
        self._entries = []
        self._names = set()

    def _add(self, name, mode, data=b"", rdev=(0, 0)):
        name = name.strip("/")
        if not name or name in self._names:
            raise ValueError(f"initramfs entry {name!r} is empty or already present")
        self._names.add(name)
        self._entries.append((name, mode, data, rdev))

    def directory(self, name, perm=0o755):
        """Add a directory."""
        self._add(name, stat.S_IFDIR | perm)

    def file(self, name, data, perm=0o644):
        """Add a regular file with ``data`` (bytes)."""
        self._add(name, stat.S_IFREG | perm, bytes(data))

    def symlink(self, name, target):
        """Add a symbolic link ``name`` -> ``target``."""
        self._add(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name, major, minor, perm=0o600):
        """Add a character device node, e.g. ``/dev/console`` (5, 1)."""
        self._add(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def __contains__(self, name):
        return name.strip("/") in self._names

    def to_bytes(self):
        """The whole archive as bytes."""
        out = bytearray()
        for ino, (name, mode, data, (rmaj, rmin)) in enumerate(self._entries + [("TRAILER!!!", 0, b"", (0, 0))], 1):
            encoded = name.encode() + b"\0"
            fields = (ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data),
                      0, 0, rmaj, rmin, len(encoded), 0)
            out += MAGIC + b"".join(b"%08X" % f for f in fields)
            out += encoded
            out += b"\0" * (-len(out) % 4)
            out += data
            out += b"\0" * (-len(out) % 4)
        return bytes(out)

    def write(self, path):
        """Write the archive to ``path``."""
        with open(path, "wb") as f:
            f.write(self.to_bytes())
