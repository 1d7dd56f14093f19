"""gunicorn settings for the lab's Keystone (read by gunicorn, never imported by cloudlab).

The master process watches the lab process that started it (a pipe, ``CLOUDLAB_PARENT_FD``)
and shuts down when that process is gone, so a notebook kernel that dies or a test
run that is killed never leaves a Keystone behind.
"""

import os
import signal
import threading

# the lab passes its listening socket as fd://N on the command line
workers = 1
threads = 4
worker_class = "gthread"
timeout = 120
graceful_timeout = 5
control_socket_disable = True


def on_starting(server):
    """Start the watch on the parent lab process (in the master only: fork copies no threads).

    The lab holds the write end of a pipe whose read end is ``CLOUDLAB_PARENT_FD``: when the
    lab process ends, however it ends, the read sees end-of-file.  A pipe, not the parent's
    pid: in a node's PID namespace the lab's pid names no process at all.
    """
    fd = int(os.environ.get("CLOUDLAB_PARENT_FD") or -1)
    if fd < 0:
        return

    def watch():
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="cloudlab-parent-watch", daemon=True).start()
