"""Service-models benchmark: the platform's deploy, scale-out and load balancer, measured with wrk.

Prints one ``name value`` line per figure (issue 15's targets in brackets):

    paas_deploy_s       median seconds from deploy(folder) to the app answering through its route  [<= 5]
    scale_out_ratio     requests/s with 2 one-vCPU instances over 1, through the balancer           [>= 1.6]
    lb_overhead_ratio   requests/s through HAProxy to one instance over straight to it              [>= 0.8]
    rps_1, rps_2, rps_direct   the requests/s behind the ratios, for reference
    host_cpus           cores of this host (the ceiling of scale-out)
    host_idle_fraction  the share of the host's CPU time that was idle in the second before the load
                        runs (scale-out can only use what others leave: near 0 the ratio means little)

Every request counts to ``WORK`` in the app's shell (a few ms of CPU), so an
instance's 1-vCPU cgroup limit is what bounds it; the runs alternate (1, direct,
2, ...) and the medians are compared, so a noisy neighbour slows every side alike.
Run with ``make bench`` or ``python bench/service_models.py`` (the lab host stays in
its own network namespace, like the tests).
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("CLOUDLAB_NETNS", "cloudlab-bench")

import cloudlab as cl  # noqa: E402
from cloudlab import host as host_mod  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DURATION_S = float(os.environ.get("BENCH_DURATION_S", "3"))
WORK = int(os.environ.get("BENCH_WORK", "3000"))


def figure(name, value):
    """Print one figure as ``name value``."""
    print(f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}", flush=True)


def idle_fraction(seconds=1.0):
    """The share of all CPUs' time that was idle over the next ``seconds`` (from /proc/stat)."""
    def sample():
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)        # idle + iowait, total
    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)


def main():
    """Deploy the sample app ROUNDS times, then measure 1 instance, straight, and 2 instances."""
    was_up = host_mod.load_state() is not None and host_mod._healthy(host_mod.load_state())
    if not was_up:
        host_mod.up()
    folder = cl.platform.sample("notes", Path(tempfile.mkdtemp()) / "notes")
    try:
        run(folder)
    finally:
        if not was_up:
            host_mod.down(quiet=True)


def run(folder):
    """The figures, on a lab of their own."""
    with cl.Lab(name="benchpaas") as lab:
        deploys = []
        for i in range(ROUNDS):
            started = time.monotonic()
            app = lab.platform.deploy(folder, name=f"d{i}")
            deploys.append(time.monotonic() - started)
            app.delete()
        figure("paas_deploy_s", statistics.median(deploys))

        app = lab.platform.deploy(folder, name="notes")
        path = f"cgi-bin/notes?work={WORK}"
        idle = idle_fraction()
        one, direct, two = [], [], []
        for _ in range(ROUNDS):
            app.scale(1)
            one.append(lab.platform.load(app.url + path, duration_s=DURATION_S).requests_per_s)
            direct.append(lab.platform.load(app.instance_url(0) + path, duration_s=DURATION_S).requests_per_s)
            app.scale(2)
            two.append(lab.platform.load(app.url + path, duration_s=DURATION_S).requests_per_s)
        rps_1, rps_2, rps_direct = (statistics.median(v) for v in (one, two, direct))
        figure("scale_out_ratio", rps_2 / rps_1)
        figure("lb_overhead_ratio", rps_1 / rps_direct)
        figure("rps_1", rps_1)
        figure("rps_2", rps_2)
        figure("rps_direct", rps_direct)
        figure("host_cpus", os.cpu_count())
        figure("host_idle_fraction", idle)


if __name__ == "__main__":
    main()
