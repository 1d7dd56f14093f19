"""The init of a node: PID 1 of the node's own PID namespace (run as a script, imports nothing of cloudlab).

A PID namespace lives as long as its first process, and that process inherits every
orphan in it: libvirtd detaches itself (``-d``), and so does each QEMU it starts.  An
init must therefore reap them, or every guest that shuts down would stay a zombie that
libvirt still sees as alive.  This one does only that, and ends on SIGTERM; the kernel
then kills everything else in the namespace, as a power cut ends a machine's processes.
"""

import os
import signal
import sys
import time


def main():
    """Reap children until told to stop (SIGTERM or SIGINT)."""
    def leave(signum, frame):
        sys.exit(0)

    # PID 1 of a namespace gets no signal it has no handler for, so these are needed to stop it at all
    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.5)      # nothing to reap yet: an orphan arrives without a signal we could wait on
        except InterruptedError:
            pass


if __name__ == "__main__":
    main()
