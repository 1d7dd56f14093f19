"""A guest's answers, watched from a node: one ICMP echo request every 50 ms, each reply's time printed.

Used to show that a guest keeps answering during a live migration and to measure the
longest gap (the migration's downtime as the network sees it).  It runs as its own
process inside a node's network namespace (a thread cannot change namespace):
``python -m cloudlab.host.probe ADDRESS SECONDS`` prints one monotonic time per reply.
Raw ICMP needs root, as ``ping`` does.
"""

import os
import socket
import struct
import subprocess
import sys
import time

INTERVAL_S = 0.05


def _checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def watch(address, seconds, interval=INTERVAL_S, out=sys.stdout):
    """Send an echo request to ``address`` every ``interval`` s for ``seconds``; write each reply's time to ``out``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(0.002)
    ident = os.getpid() & 0xFFFF
    end = time.monotonic() + seconds
    seq = 0
    next_send = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_send:
            body = struct.pack("!d", now)
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            packet = struct.pack("!BBHHH", 8, 0, _checksum(header + body), ident, seq) + body
            try:
                sock.sendto(packet, (address, 0))
            except OSError:
                pass            # no route for a moment: that is a missing answer, not an error
            seq = (seq + 1) & 0xFFFF
            next_send += interval
        try:
            data = sock.recv(1024)
        except (socket.timeout, BlockingIOError):
            continue
        icmp = data[(data[0] & 0x0F) * 4:]
        if icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
            out.write(f"{time.monotonic():.4f}\n")
            out.flush()


class Watcher:
    """A probe running in a node's namespace (start it, do something, then ``stop()`` for the reply times).

    Args:
        node: the node to send from (its network namespace), e.g. ``lab.nodes.controller``.
        address: the guest's address.
        seconds: how long it may run at most.
    """

    def __init__(self, node, address, seconds=120.0):
        from .ownership import child_env
        self.started = time.monotonic()
        self._proc = subprocess.Popen(node.enter_args() + [sys.executable, "-m", "cloudlab.host.probe", address,
                                                           str(seconds)],
                                      stdout=subprocess.PIPE, text=True, env=child_env())

    def stop(self):
        """End the probe; returns the monotonic times of the replies it got."""
        from ..process import stop_process
        stop_process(self._proc, timeout=2)
        out = self._proc.stdout.read()
        self._proc.stdout.close()
        return [float(line) for line in out.split()]


def longest_gap_ms(replies, start, end):
    """The longest time between two answers around the window ``start``..``end`` (monotonic s), in ms.

    The last answer before ``start`` and the first after ``end`` count, so a guest that
    stops answering at the start is not missed.
    """
    before = [r for r in replies if r < start]
    inside = [r for r in replies if start <= r <= end]
    after = [r for r in replies if r > end]
    window = before[-1:] + inside + after[:1]
    gaps = [b - a for a, b in zip(window, window[1:])]
    return max(gaps) * 1000 if gaps else float("inf")


if __name__ == "__main__":
    watch(sys.argv[1], float(sys.argv[2]))
