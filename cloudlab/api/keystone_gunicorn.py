"""gunicorn settings for the lab's Keystone (read by gunicorn, never imported by cloudlab).

The master process watches the lab process that started it (``CLOUDLAB_PARENT_PID``)
and shuts down when that process is gone, so a notebook kernel that dies or a test
run that is killed never leaves a Keystone behind.
"""

import os
import signal
import threading
import time

# the lab passes its listening socket as fd://N on the command line
workers = 1
threads = 4
worker_class = "gthread"
timeout = 120
graceful_timeout = 5
control_socket_disable = True


def on_starting(server):
    """Start the watch on the parent lab process (in the master only: fork copies no threads)."""
    parent = int(os.environ.get("CLOUDLAB_PARENT_PID") or 0)
    if not parent:
        return

    def watch():
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="cloudlab-parent-watch", daemon=True).start()
