"""The platform (PaaS): give it only an app's code; it builds, runs, routes, restarts and scales it.

    app = lab.platform.deploy("app/")        # a folder with the code, nothing else
    app.url                                  # its route: http://ADDRESS:PORT/ through HAProxy
    app.get("/cgi-bin/notes").text           # answered by one of its instances
    app.scale(3)                             # three instances behind the same route
    app.crash(0)                             # kill one: the platform starts it again

What happens on ``deploy`` (one module each):

* :mod:`~cloudlab.platform.buildpacks`: the app is recognised by its files (a
  ``Procfile``, a ``cgi-bin/``, an ``index.html``); a folder with none of them is
  refused with what was looked for;
* an image is built on the lab's container engine (:mod:`cloudlab.containers`):
  the base image plus the app's files in ``/app`` and the command the buildpack chose;
* instances (containers, each with a flavor's CPU and memory limits) run it;
* :mod:`~cloudlab.platform.balancer`: a real HAProxy gives the app a route and
  balances it over the instances, with health checks;
* a watcher starts again any instance whose process ended (a crash, a kill),
  and points the route at its new address.

Nothing of this is the developer's to run: that is what PaaS takes off their hands
(IaaS leaves the OS, the runtime and the web server to them, SaaS leaves them only the
app's use).  :mod:`~cloudlab.platform.loadgen` measures an app under load with wrk.
"""

import re
import shutil
import threading
import time
from pathlib import Path

from ..errors import CloudlabError, Conflict, InvalidInput, NotFound, QuotaExceeded
from . import buildpacks, http, loadgen, models
from .balancer import Balancer
from .models import LAYERS, MODELS, matrix_template

__all__ = ["Platform", "App", "ScalingPolicy", "sample", "copy_into", "SAMPLES", "LAYERS", "MODELS",
           "matrix_template", "plot_load"]

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
SAMPLES = Path(__file__).parent / "samples"
DEFAULT_MAX_INSTANCES = 6
WATCH_INTERVAL_S = 0.5
RUNNING = "RUNNING"


def sample(name="notes", into=None):
    """Copy the sample app ``name`` into folder ``into`` (default: a fresh temporary folder) and return it.

    Raises:
        NotFound: no sample app of that name.
    """
    source = SAMPLES / name
    if not source.is_dir():
        raise NotFound(f"no sample app named {name!r}",
                       fix=f"use one of: {', '.join(sorted(p.name for p in SAMPLES.iterdir()))}")
    if into is None:
        import tempfile
        into = Path(tempfile.mkdtemp(prefix="cloudlab-app-")) / name
    into = Path(into)
    if into.exists():
        shutil.rmtree(into)
    shutil.copytree(source, into)
    return into


def copy_into(server, folder, target="/app"):
    """Copy the files of ``folder`` into a running server at ``target`` (through its agent); returns their paths.

    What IaaS leaves to you: the server has an OS, and you put the app on it.
    Executable files stay executable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFound(f"no folder at {folder}", fix="give the app's folder")
    copied = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        inside = f"{target}/{path.relative_to(folder).as_posix()}"
        mode = "755" if path.stat().st_mode & 0o111 else "644"
        result = server.run(f"mkdir -p \"$(dirname {inside})\" && cat > {inside} && chmod {mode} {inside}",
                            input=path.read_text())
        if not result.ok:
            raise CloudlabError(f"copying {path.name} into {server.name} failed: {result.stderr.strip()}")
        copied.append(inside)
    return copied


def plot_load(rows, title="requests/s at each step"):
    """A bar chart of ``rows`` (from :meth:`LoadResult.row`, each with a ``setting``): requests/s and p99 latency."""
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
    labels = [r["setting"] for r in rows]
    left.bar(labels, [r["requests/s"] for r in rows], color="tab:blue")
    left.set_title(title)
    right.bar(labels, [r["p99 ms"] for r in rows], color="tab:orange")
    right.set_title("p99 latency (ms)")
    for axis in (left, right):
        axis.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    plt.close(fig)
    return fig


class App:
    """An app the platform runs: its image, its instances (containers) and its route.

    Use :meth:`Platform.deploy` to make one.
    """

    def __init__(self, platform, name, detection, folder, flavor):
        self.platform = platform
        self.name = name
        self.detection = detection
        self.folder = Path(folder)
        self.flavor = flavor
        self.version = 0
        self.image = None
        self.instances = []           # container names, in the order they started
        self.address = None
        self.port = None
        self.restarts = 0
        self.scaling = None           # a ScalingPolicy, once one is made for the app
        self.events = []              # (seconds since deploy, what happened)
        self._serial = 0
        self._born = time.monotonic()

    # -- what it is ---------------------------------------------------------------------

    @property
    def buildpack(self):
        """The buildpack that recognised the app (``cgi``, ``static``, ``procfile``)."""
        return self.detection.buildpack

    @property
    def url(self):
        """The app's route: ``http://ADDRESS:PORT/`` (the load balancer's frontend)."""
        return f"http://{self.address}:{self.port}/"

    def _event(self, text):
        self.events.append((round(time.monotonic() - self._born, 2), text))

    def status(self):
        """``{instance: status}`` of its containers (RUNNING, STOPPED, ...)."""
        statuses = self.platform.lab.containers.statuses()
        return {name: statuses.get(name, "DELETED") for name in self.instances}

    def backends(self):
        """What the load balancer sees: one dict per instance (name, address, status UP/DOWN, requests)."""
        rows = []
        for row in self.platform.balancer.stat():
            if row["pxname"] == self.name and row["svname"] not in ("FRONTEND", "BACKEND"):
                rows.append({"instance": row["svname"], "address": row.get("addr", ""),
                             "status": row["status"].split()[0], "requests": int(row.get("stot") or 0)})
        return rows

    def request_rate(self):
        """Requests per second arriving at the route over the last second (HAProxy's frontend ``rate``)."""
        for row in self.platform.balancer.stat():
            if row["pxname"] == self.name and row["svname"] == "FRONTEND":
                return float(row.get("rate") or 0)
        return 0.0

    def instance_url(self, instance=0):
        """The URL of instance number ``instance`` itself, past the load balancer (to compare with :attr:`url`)."""
        address = self.platform.lab.containers.get_container(self.instances[instance]).address
        return f"http://{address}:{self.detection.port}/"

    def logs(self, instance=0):
        """The log of instance number ``instance`` (its web server's lines)."""
        return self.platform.lab.containers.get_container(self.instances[instance]).logs()

    # -- using it -----------------------------------------------------------------------

    def get(self, path="/", tenant=None, timeout=10.0):
        """GET ``path`` through the app's route; returns an :class:`~cloudlab.platform.http.Response`."""
        return http.request(self._url(path, tenant), ns=self.platform.netns, timeout=timeout)

    def post(self, path, data, tenant=None, timeout=10.0):
        """POST ``data`` to ``path`` through the app's route."""
        return http.request(self._url(path, tenant), ns=self.platform.netns, method="POST", data=data,
                            timeout=timeout)

    def _url(self, path, tenant):
        url = self.url.rstrip("/") + "/" + path.lstrip("/")
        if tenant is not None:
            url += ("&" if "?" in url else "?") + f"tenant={tenant}"
        return url

    # -- running it ---------------------------------------------------------------------

    def scale(self, instances, timeout=30.0):
        """Run ``instances`` instances behind the route (scale out or in); returns the app.

        Raises:
            InvalidInput: not a whole number from 1.
            QuotaExceeded: more than the platform's quota or the host's memory holds
                (checked before anything starts).
        """
        return self.platform._scale(self, instances, self.flavor, timeout)

    def resize(self, flavor, timeout=30.0):
        """Give every instance the limits of ``flavor`` (scale up or down): new instances replace the old.

        Raises:
            NotFound: no such flavor.
            QuotaExceeded: the host's memory does not hold it.
        """
        return self.platform._resize(self, flavor, timeout)

    def crash(self, instance=0):
        """Kill instance number ``instance`` with SIGKILL, as a crash would; the platform restarts it."""
        name = self.instances[instance]
        self.platform.lab.containers.get_container(name).kill()
        self._event(f"{name} killed")
        return name

    def wait_healthy(self, timeout=30.0):
        """Wait until every instance runs, the load balancer has it UP and the route answers; returns the app.

        Raises:
            ResourceTimeout: not within ``timeout`` seconds.
        """
        from ..errors import ResourceTimeout
        deadline = time.monotonic() + timeout
        while True:
            with self.platform._lock:
                backends = self.backends()
                up = {b["instance"] for b in backends if b["status"] == "UP"}
                ok = set(self.instances) <= up and all(s == RUNNING for s in self.status().values())
            if ok:
                # HAProxy's UP can predate a crash its health check has not seen yet (the restarted
                # instance not listening again): the route itself must answer, as after a deploy
                http.wait_for(self.url, ns=self.platform.netns, timeout=max(1.0, deadline - time.monotonic()),
                              status=None)
                return self
            if time.monotonic() > deadline:
                raise ResourceTimeout(f"app {self.name} is not healthy after {timeout:g} s: {backends}",
                                      fix="read app.logs() and app.events")
            time.sleep(0.1)

    def delete(self):
        """Delete the app: its route, its instances and its image."""
        self.platform.delete_app(self.name)

    def __repr__(self):
        return f"<App {self.name} ({self.buildpack}) {len(self.instances)} instance(s) at {self.url}>"


class ScalingPolicy:
    """Rapid elasticity: an app's instances follow its load (what Heat's and Senlin's scaling groups do).

    Each :meth:`step` reads the request rate HAProxy sees at the app's route (requests
    per second over the last second) and scales the app to
    ``ceil(rate / target_per_instance)`` instances, kept within ``minimum..maximum``.

    Args:
        app: the :class:`App` whose instances form the group.
        minimum, maximum: the group's size limits.
        target_per_instance: requests/s one instance should carry.
    """

    def __init__(self, app, minimum=1, maximum=3, target_per_instance=20.0):
        if not (isinstance(minimum, int) and isinstance(maximum, int) and 1 <= minimum <= maximum):
            raise InvalidInput(f"minimum={minimum!r}, maximum={maximum!r} are not usable",
                               fix="whole numbers with 1 <= minimum <= maximum")
        if not target_per_instance > 0:
            raise InvalidInput(f"target_per_instance={target_per_instance!r} must be positive")
        self.app = app
        self.minimum, self.maximum, self.target = minimum, maximum, float(target_per_instance)
        self.history = []            # (seconds since the policy began, requests/s, instances after the step)
        self._began = time.monotonic()
        app.scaling = self

    def desired(self, rate):
        """How many instances carry ``rate`` requests/s (within the limits)."""
        import math
        return max(self.minimum, min(self.maximum, math.ceil(rate / self.target) if rate > 0 else 0))

    def step(self):
        """Read the load, scale if the group's size should change; returns ``(rate, instances)``."""
        rate = self.app.request_rate()
        wanted = self.desired(rate)
        if wanted != len(self.app.instances):
            self.app.scale(wanted)
        self.history.append((round(time.monotonic() - self._began, 2), rate, len(self.app.instances)))
        return rate, len(self.app.instances)

    def run(self, seconds, interval=0.5):
        """:meth:`step` every ``interval`` seconds for ``seconds``; returns the history."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.step()
            time.sleep(interval)
        return self.history

    def run_with_load(self, path="/", load_s=4.0, after_s=3.0, connections=8, interval=0.5):
        """Load the app with wrk for ``load_s`` seconds while stepping, then ``after_s`` seconds more without.

        Returns the history: ``(seconds, requests/s, instances)`` at each step.
        """
        url = self.app.url.rstrip("/") + "/" + path.lstrip("/")
        done = {}
        worker = threading.Thread(target=lambda: done.update(result=self.app.platform.load(
            url, duration_s=load_s, connections=connections)), name="scaling-load")
        worker.start()
        try:
            self.run(load_s + 0.5, interval)
        finally:
            worker.join()
        self.run(after_s, interval)
        self.load_result = done.get("result")
        return self.history


class Platform:
    """The lab's platform service (``lab.platform``): apps deployed from their code alone.

    Args:
        lab: the :class:`~cloudlab.lab.Lab`; its containers and network carry the apps.
    Attributes:
        max_instances: the quota of instances over all apps (default 6).
    """

    def __init__(self, lab):
        self.lab = lab
        self.max_instances = DEFAULT_MAX_INSTANCES
        self._apps = {}
        self._lock = threading.RLock()
        self._balancer = None
        self._watcher = None
        self._stopping = threading.Event()

    @property
    def netns(self):
        """The lab's network namespace (None: the machine's network), where routes and instances live."""
        return self.lab.host.netns

    @property
    def balancer(self):
        """The lab's load balancer (HAProxy), started on first use."""
        with self._lock:
            if self._balancer is None:
                balancer = Balancer(self.lab.home, self.lab.prefix, self.netns)
                balancer.start()
                self._balancer = balancer
            return self._balancer

    def start(self):
        """Start the container service the apps run on (HAProxy and the watcher start at the first deploy).

        The containers start first so that the lab, which stops services newest first,
        stops the platform (its watcher, its routes) before the containers under it.
        """
        self.lab.containers  # noqa: B018 - starts the service
        return self

    def stop(self):
        """Delete every app and stop the load balancer and the watcher."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
            self._watcher = None
        problems = []
        for name in list(self._apps):
            try:
                self.delete_app(name)
            except CloudlabError as exc:
                problems.append(str(exc))
        if self._balancer is not None:
            self._balancer.stop()
            self._balancer = None
        if problems:
            raise CloudlabError("some apps were not removed: " + "; ".join(problems), fix="python -m cloudlab clean")

    def request(self, url, method="GET", data=None, timeout=10.0):
        """One HTTP request to an address of the lab (a server's, a route's), made from the lab's network.

        Returns an :class:`~cloudlab.platform.http.Response` (``status``, ``headers``, ``text``).
        """
        return http.request(url, ns=self.netns, method=method, data=data, timeout=timeout)

    def load(self, url, duration_s=2.0, connections=4):
        """Load ``url`` with wrk from the lab's network; returns a :class:`~cloudlab.platform.loadgen.LoadResult`."""
        return loadgen.run(url, ns=self.netns, duration_s=duration_s, connections=connections)

    # -- apps ---------------------------------------------------------------------------

    def list_apps(self):
        """The deployed apps, by name."""
        with self._lock:
            return [self._apps[n] for n in sorted(self._apps)]

    def get_app(self, name):
        """The app called ``name``.

        Raises:
            NotFound: no such app; the message lists the deployed ones.
        """
        with self._lock:
            if name in self._apps:
                return self._apps[name]
        raise NotFound(f"no app named {name!r}", fix=f"deployed apps: {', '.join(self._apps) or '(none)'}")

    def deploy(self, path, name=None, instances=1, flavor="m1.tiny", timeout=30.0):
        """Deploy the app whose code is in folder ``path``; returns the :class:`App` once its route answers.

        Args:
            path: the app's folder (only code: no image, no server, no web server of yours).
            name: the app's name (default: the folder's), lower-case letters, digits and '-'.
            instances: how many instances run it.
            flavor: the compute flavor whose vCPUs and memory limit each instance.
        Raises:
            InvalidInput: a bad name, or no buildpack recognises the folder (the message
                says what was looked for).
            NotFound: no such folder or flavor.
            Conflict: an app of that name is deployed.
            QuotaExceeded: more instances than the quota or the host's memory holds.
        """
        folder = Path(path)
        name = name if name is not None else folder.resolve().name.lower().replace("_", "-")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"app name {name!r} is not valid",
                               fix="use 1-20 lower-case letters, digits and '-', starting with a letter")
        detection = buildpacks.detect(folder)
        flavor_obj = self.lab.compute.get_flavor(flavor)
        with self._lock:
            if name in self._apps:
                raise Conflict(f"an app named {name!r} is deployed", fix="choose another name, or delete it first")
            self._check_room(None, instances, flavor_obj)
            app = App(self, name, detection, folder, flavor_obj.name)
            self._apps[name] = app
        try:
            self._build(app)
            self._scale(app, instances, flavor_obj.name, timeout, route=False)
            app.address = self.lab.host.gateway
            from ..host import netns as netns_mod
            app.port = netns_mod.free_port(self.netns, app.address)
            self._publish(app)
            http.wait_for(app.url, ns=self.netns, timeout=timeout, status=None)
            app._event(f"deployed with {detection.buildpack} buildpack, {instances} instance(s)")
        except BaseException:
            self.delete_app(name)                 # nothing half-made
            raise
        self._ensure_watcher()
        return app

    def delete_app(self, name):
        """Delete app ``name``: its route, its instances, its image.

        Raises:
            NotFound: no such app.
        """
        app = self.get_app(name)
        containers = self.lab.containers
        with self._lock:
            self._apps.pop(name, None)
            if self._balancer is not None:
                self._balancer.remove_route(name)
            for instance in app.instances:
                try:
                    containers.delete_container(instance)
                except NotFound:
                    pass
            app.instances = []
            if app.image is not None:
                try:
                    containers.delete_image(app.image)
                except NotFound:
                    pass

    # -- how ----------------------------------------------------------------------------

    def _check_room(self, app, instances, flavor):
        if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
            raise InvalidInput(f"instances={instances!r} is not usable", fix="give a whole number from 1")
        others = sum(len(a.instances) for a in self._apps.values() if a is not app)
        if others + instances > self.max_instances:
            raise QuotaExceeded(f"quota 'instances' is {self.max_instances}: other apps use {others}, "
                                f"and {instances} more do not fit",
                                fix=f"ask for at most {self.max_instances - others}, or delete an app")
        import os
        cores = os.cpu_count() or 1
        if flavor.vcpus > cores:
            raise QuotaExceeded(f"flavor {flavor.name} has {flavor.vcpus} vCPUs; an instance cannot have more than "
                                f"the host's {cores} cores", fix="choose a flavor with fewer vCPUs")
        mine = len(app.instances) if app is not None else 0
        more_mib = max(0, instances - mine) * flavor.ram_mib
        free = self.lab.host.free_memory_mib()
        if more_mib > free:
            raise QuotaExceeded(f"{instances} instances of {flavor.name} need {more_mib} MiB more memory; "
                                f"the host has {free} MiB free", fix="ask for fewer, or a smaller flavor")

    def _build(self, app):
        app.version += 1
        image = f"{app.name}-v{app.version}"
        self.lab.containers.build_image(image, files={buildpacks.APP_DIR: app.folder},
                                        command=app.detection.command, env={"PORT": str(app.detection.port)},
                                        workdir=buildpacks.APP_DIR, ports=[app.detection.port])
        app.image = image
        app._event(f"built image {image}")

    def _start_instance(self, app, flavor):
        app._serial += 1
        name = f"{app.name}-{app._serial}"
        self.lab.containers.create_container(name, image=app.image, flavor=flavor,
                                             env={"PORT": str(app.detection.port), "APP_NAME": app.name})
        app.instances.append(name)
        app._event(f"started {name}")
        return name

    def _servers(self, app):
        containers = self.lab.containers
        servers = []
        for name in app.instances:
            address = containers.get_container(name).address
            if address:
                servers.append((name, address, app.detection.port))
        return servers

    def _publish(self, app):
        if app.port is not None:
            self.balancer.set_route(app.name, app.address, app.port, self._servers(app))

    def _scale(self, app, instances, flavor, timeout, route=True):
        flavor_obj = self.lab.compute.get_flavor(flavor)
        with self._lock:
            self._check_room(app, instances, flavor_obj)
            while len(app.instances) < instances:
                self._start_instance(app, flavor_obj.name)
            removed = []
            while len(app.instances) > instances:
                removed.append(app.instances.pop())
            if route:
                self._publish(app)         # the route leaves the removed ones before they go
            for name in removed:
                self.lab.containers.delete_container(name)
                app._event(f"removed {name}")
        if route:
            app.wait_healthy(timeout)
        return app

    def _resize(self, app, flavor, timeout):
        flavor_obj = self.lab.compute.get_flavor(flavor)
        with self._lock:
            count = len(app.instances)
            self._check_room(app, count, flavor_obj)
            old = list(app.instances)
            app.flavor = flavor_obj.name
            for _ in range(count):
                self._start_instance(app, flavor_obj.name)
            app.instances = app.instances[count:]
            self._publish(app)
            for name in old:
                self.lab.containers.delete_container(name)
                app._event(f"removed {name}")
        app.wait_healthy(timeout)
        return app

    # -- the watcher: restart what ended ------------------------------------------------

    def _ensure_watcher(self):
        with self._lock:
            if self._watcher is None or not self._watcher.is_alive():
                self._stopping.clear()
                self._watcher = threading.Thread(target=self._watch, name=f"{self.lab.prefix}platform-watcher",
                                                 daemon=True)
                self._watcher.start()

    def _watch(self):
        while not self._stopping.wait(WATCH_INTERVAL_S):
            try:
                self.check_instances()
            except CloudlabError:
                pass           # the engine was busy or the host is going down: look again next time

    def check_instances(self):
        """Start again every instance whose process ended; returns the names restarted (the watcher calls it)."""
        restarted = []
        with self._lock:
            if not self._apps or self._stopping.is_set():
                return restarted
            statuses = self.lab.containers.statuses()
            for app in list(self._apps.values()):
                moved = False
                for name in app.instances:
                    status = statuses.get(name, "DELETED")
                    if status == RUNNING:
                        continue
                    containers = self.lab.containers
                    if status == "DELETED":
                        containers.create_container(name, image=app.image, flavor=app.flavor,
                                                    env={"PORT": str(app.detection.port), "APP_NAME": app.name})
                    else:
                        containers.get_container(name).start()
                    app.restarts += 1
                    app._event(f"{name} was {status}: started again")
                    restarted.append(name)
                    moved = True
                if moved:
                    self._publish(app)       # a restarted container may have a new address
        return restarted

    def __repr__(self):
        return f"<Platform of lab {self.lab.name!r}: {len(self._apps)} app(s)>"
