"""Load on an app from a real load generator: wrk (Debian's), run inside the lab's network namespace.

wrk keeps ``connections`` HTTP/1.1 connections busy for ``duration`` seconds and
reports requests per second and the latency distribution.  On a 2-core host wrk
itself takes CPU from what it measures, so one thread and a few connections are
used, and a comparison (one instance vs two, through the balancer vs straight)
is only fair within one run on the same host.
"""

import dataclasses
import re
import shutil
import subprocess

from ..errors import CloudlabError, InvalidInput, MissingPrerequisite
from ..host import netns as netns_mod
from ..host import ownership

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclasses.dataclass
class LoadResult:
    """What wrk measured: requests/s, latency percentiles (ms), requests, errors, the setting."""

    url: str
    requests_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    requests: int
    errors: int
    connections: int
    duration_s: float

    def row(self, **extra):
        """A dict for a table: the setting given as ``extra``, then the figures."""
        return {**extra, "requests/s": round(self.requests_per_s, 1), "p50 ms": round(self.latency_p50_ms, 2),
                "p99 ms": round(self.latency_p99_ms, 2), "errors": self.errors}


def _ms(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def parse(output, url="", connections=0, duration_s=0.0):
    """A :class:`LoadResult` from wrk's ``--latency`` output.

    Raises:
        CloudlabError: the output has no ``Requests/sec`` line (wrk failed; its text is shown).
    """
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not rps:
        raise CloudlabError(f"wrk measured nothing: {output.strip()[-400:]}", fix="does the URL answer? app.get('/')")
    percent = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", output, re.M))
    total = re.search(r"(\d+) requests in", output)
    # not "read": busybox httpd closes the connection after each CGI answer (it sends no length),
    # which wrk counts as a read error although the answer arrived whole
    errors = sum(int(n) for n in re.findall(r"(?:connect|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non2xx.group(1)) if non2xx else 0
    return LoadResult(url, float(rps.group(1)), _ms(percent.get("50", "nan")), _ms(percent.get("99", "nan")),
                      int(total.group(1)) if total else 0, errors, connections, duration_s)


def run(url, ns=None, duration_s=2.0, connections=4, threads=1, timeout_s=5):
    """Load ``url`` with wrk for ``duration_s`` seconds from inside namespace ``ns``; returns a :class:`LoadResult`.

    Raises:
        MissingPrerequisite: wrk is not installed.
        InvalidInput: a duration or connection count that is not usable.
        CloudlabError: wrk failed.
    """
    if shutil.which("wrk") is None:
        raise MissingPrerequisite("wrk is not installed", fix="make system  (or: apt-get install wrk)")
    if not 0.5 <= duration_s <= 120 or not 1 <= connections <= 256 or not 1 <= threads <= connections:
        raise InvalidInput(f"duration_s={duration_s}, connections={connections}, threads={threads} are not usable",
                           fix="0.5-120 s, 1-256 connections, 1..connections threads")
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", f"--timeout={timeout_s}s",
            "--latency", url]
    done = subprocess.run(netns_mod.enter_args(ns) + argv, capture_output=True, text=True,
                          timeout=duration_s + timeout_s + 30, env=ownership.child_env())
    if done.returncode != 0:
        raise CloudlabError(f"wrk failed: {(done.stderr or done.stdout).strip()[-400:]}")
    return parse(done.stdout, url, connections, duration_s)
