"""A service's records in the lab's state folder: one JSON file, replaced whole.

The block storage and shared file system services keep what they know (volumes,
snapshots, shares, access rules, quotas) in ``<lab home>/<prefix><service>.json``,
so that a notebook restarted mid-lab finds its volumes again and ``python -m
cloudlab clean`` (which removes every file with the lab's prefix) removes the
records with the data.  Each save writes a temporary file (with the prefix too)
and renames it over the old one: a crash leaves the old records or the new, never
half of either.
"""

import json
import os
import threading


class Records:
    """A JSON document kept in one file.

    Args:
        path: the file (``pathlib.Path``); its folder must exist.
        empty: the document to start from when the file does not exist.
    """

    def __init__(self, path, empty):
        self.path = path
        self._empty = empty
        self._lock = threading.Lock()

    def load(self):
        """The saved document, or a copy of ``empty`` when there is none (or it is unreadable)."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return json.loads(json.dumps(self._empty))
        for key, value in self._empty.items():
            data.setdefault(key, json.loads(json.dumps(value)))
        return data

    def save(self, data):
        """Replace the file with ``data`` (temporary file, fsync, rename)."""
        with self._lock:
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)

    def remove(self):
        """Delete the file (and a temporary one left by a crash)."""
        self.path.unlink(missing_ok=True)
        self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)
