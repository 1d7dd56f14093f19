"""Ending the processes cloudlab starts: politely first, then for sure, and only our own.

Every server, daemon and peer that a lab, a test or a benchmark starts is ended
through here, by its own ``Popen`` handle (hence by its PID), never by name.
"""

import signal
import subprocess


def stop_process(proc, timeout=5.0):
    """End ``proc`` (a ``subprocess.Popen``): SIGTERM, then SIGKILL after ``timeout`` seconds.

    Returns its exit status; does nothing to a process that has already exited.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
