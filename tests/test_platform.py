"""The platform (PaaS) on real parts: buildpacks, podman images and containers, HAProxy, wrk.

Unit tests first (buildpack detection, HAProxy's configuration, wrk's output), then one
module-scoped lab that deploys the sample app for real, routes it through HAProxy in
the lab's network namespace, crashes it, scales it and loads it with wrk (short runs).
"""

import os
import shutil
import time

import pytest

import cloudlab as cl
from cloudlab import config, host, platform
from cloudlab.platform import balancer, buildpacks, http, loadgen


# -- unit tests ------------------------------------------------------------------------------

def test_buildpacks_recognise_each_kind_of_app(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<h1>hi</h1>")
    assert buildpacks.detect(tmp_path / "site").buildpack == "static"
    found = buildpacks.detect(platform.sample("notes", tmp_path / "notes"))
    assert (found.buildpack, found.port) == ("cgi", 8080) and "httpd -f" in found.command
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "Procfile").write_text("worker: x\nweb: httpd -f -p $PORT -h /app\n")
    (tmp_path / "proc" / "index.html").write_text("x")
    found = buildpacks.detect(tmp_path / "proc")       # a Procfile wins over the others
    assert (found.buildpack, found.command) == ("procfile", "httpd -f -p $PORT -h /app")


def test_a_folder_without_an_app_says_what_was_looked_for(tmp_path):
    (tmp_path / "README.md").write_text("no app here")
    with pytest.raises(cl.InvalidInput) as err:
        buildpacks.detect(tmp_path)
    for looked_for in ("Procfile", "cgi-bin/", "index.html", "README.md"):
        assert looked_for in str(err.value)
    with pytest.raises(cl.NotFound):
        buildpacks.detect(tmp_path / "missing")
    (tmp_path / "Procfile").write_text("worker: run\n")
    with pytest.raises(cl.InvalidInput, match="web: COMMAND"):
        buildpacks.detect(tmp_path)
    (tmp_path / "Procfile").unlink()
    (tmp_path / "cgi-bin").mkdir()
    (tmp_path / "cgi-bin" / "run").write_text("#!/bin/sh\n")
    with pytest.raises(cl.InvalidInput, match="not executable"):
        buildpacks.detect(tmp_path)


def test_haproxy_configuration_is_valid_for_haproxy_itself(tmp_path):
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (make system)")
    text = balancer.render({"web": ("127.0.0.1", 18080, [("web-1", "127.0.0.2", 8080), ("web-2", "127.0.0.3", 8080)]),
                            "empty": ("127.0.0.1", 18081, [])}, tmp_path / "s.sock")
    assert "frontend web" in text and "bind 127.0.0.1:18080" in text and "balance roundrobin" in text
    assert text.count(balancer.HEALTH) == 2
    cfg = tmp_path / "h.cfg"
    cfg.write_text(text)
    import subprocess
    done = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


WRK_OUTPUT = """Running 2s test @ http://10.0.0.1:8080/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.13ms    2.01ms  20.19ms   80.00%
  Latency Distribution
     50%    4.13ms
     75%    5.00ms
     90%    7.00ms
     99%    1.20s
  1717 requests in 2.00s, 200.00KB read
  Socket errors: connect 1, read 1717, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:    858.60
"""


def test_wrk_output_is_read_with_its_units():
    result = loadgen.parse(WRK_OUTPUT)
    assert result.requests_per_s == 858.6 and result.requests == 1717
    assert result.latency_p50_ms == pytest.approx(4.13) and result.latency_p99_ms == pytest.approx(1200.0)
    assert result.errors == 6          # connect + timeout + non-2xx; the closes after each answer are not errors
    with pytest.raises(cl.CloudlabError, match="wrk measured nothing"):
        loadgen.parse("unable to connect to 10.0.0.1:8080 Connection refused")
    with pytest.raises(cl.InvalidInput):
        loadgen.run("http://127.0.0.1:1/", duration_s=0.1)


def test_http_refuses_what_is_not_an_http_url():
    with pytest.raises(cl.InvalidInput):
        http.request("ftp://example/")
    with pytest.raises(cl.CloudlabError, match="no HTTP answer from 127.0.0.1"):
        http.request("http://127.0.0.1:1/", timeout=1)


# -- on the lab ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    lab = cl.Lab(name="paastest")
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def app(lab, tmp_path_factory):
    folder = platform.sample("notes", tmp_path_factory.mktemp("apps") / "notes")
    started = time.monotonic()
    app = lab.platform.deploy(folder)
    app.deploy_s = time.monotonic() - started
    return app


@pytest.mark.lab
def test_deploy_builds_runs_and_routes_the_app_through_haproxy(lab, app):
    assert app.buildpack == "cgi" and app.image == "notes-v1"
    assert app.deploy_s < 15                       # the target is 5 s (bench/service_models.py); CI is loaded
    assert app.address == lab.host.gateway and app.url.startswith(f"http://{app.address}:")
    answer = app.get("/cgi-bin/notes?tenant=acme")
    assert answer.status == 200 and "notes for acme, served by notes-1" in answer.text
    assert answer.headers["x-served-by"] == "notes-1"        # set by HAProxy: it went through the balancer
    assert app.post("/cgi-bin/notes", "buy milk", tenant="acme").text.splitlines()[1:] == ["buy milk"]
    assert "buy milk" not in app.get("/cgi-bin/notes?tenant=globex").text      # tenants apart
    # the HAProxy process is the lab's: in its namespace, with the owner mark
    pid = lab.platform.balancer.pid
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{config.netns()}").st_ino
    assert b"CLOUDLAB_OWNER=" in open(f"/proc/{pid}/environ", "rb").read()
    assert [b["status"] for b in app.backends()] == ["UP"]


@pytest.mark.lab
def test_deploy_refuses_bad_input_before_anything_starts(lab, app, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(cl.InvalidInput, match="looked for"):
        lab.platform.deploy(tmp_path / "empty")
    with pytest.raises(cl.Conflict):
        lab.platform.deploy(app.folder)
    with pytest.raises(cl.InvalidInput):
        lab.platform.deploy(app.folder, name="Bad Name")
    before = set(lab.containers.statuses())
    with pytest.raises(cl.QuotaExceeded, match="quota 'instances' is 6"):
        lab.platform.deploy(app.folder, name="big", instances=7)
    with pytest.raises(cl.QuotaExceeded, match="quota 'instances'"):
        app.scale(lab.platform.max_instances + 1)
    lab.compute.create_flavor("x1.huge", vcpus=1, ram_mib=1 << 20, disk_gib=1)
    lab.compute.create_flavor("x1.wide", vcpus=64, ram_mib=128, disk_gib=1)
    with pytest.raises(cl.QuotaExceeded, match="MiB free"):
        lab.platform.deploy(app.folder, name="huge", flavor="x1.huge")
    with pytest.raises(cl.QuotaExceeded, match="host's .* cores"):
        app.resize("x1.wide")
    assert set(lab.containers.statuses()) == before        # nothing started
    assert [a.name for a in lab.platform.list_apps()] == ["notes"]
    with pytest.raises(cl.NotFound):
        lab.platform.get_app("nope")


@pytest.mark.lab
def test_a_crashed_instance_is_started_again_and_the_route_keeps_answering(lab, app):
    before = app.restarts
    name = app.crash(0)
    deadline = time.monotonic() + 20
    while app.restarts == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.restarts == before + 1
    app.wait_healthy(timeout=20)
    assert app.status() == {name: "RUNNING"}
    assert any("started again" in text for _, text in app.events)
    assert app.get("/cgi-bin/notes").status == 200


@pytest.mark.lab
def test_scale_out_spreads_requests_and_scale_in_removes_instances(lab, app):
    app.scale(2)
    assert len(app.instances) == 2 and {b["status"] for b in app.backends()} == {"UP"}
    served = {app.get("/cgi-bin/notes").headers["x-served-by"] for _ in range(6)}
    assert served == set(app.instances)                    # round robin reaches both
    result = loadgen.run(app.url + "cgi-bin/notes?work=100", ns=lab.host.netns, duration_s=1, connections=2)
    assert result.requests > 10 and result.errors == 0
    app.scale(1)
    assert len(app.instances) == 1 and len(app.backends()) == 1
    assert set(lab.containers.statuses()) >= set(app.instances)


@pytest.mark.lab
def test_resize_replaces_instances_with_the_new_flavor(lab, app):
    app.resize("m1.medium")
    (name,) = app.instances
    container = lab.containers.get_container(name)
    assert container.flavor == "m1.medium" and container.cgroup_limits()["memory_bytes"] == 512 * 2 ** 20
    assert app.get("/cgi-bin/notes").headers["x-served-by"] == name
    app.resize("m1.tiny")


@pytest.mark.lab
def test_stop_leaves_nothing_behind(lab, app):
    prefix, pid = lab.prefix, lab.platform.balancer.pid
    lab.stop()
    assert host.leftovers(prefix=prefix, only=["containers", "files"]) == []
    assert not os.path.exists(f"/proc/{pid}")


def test_the_matrix_and_the_scaling_policy_arithmetic():
    from cloudlab.platform import models
    reference = models.reference()
    assert models.wrong_cells(reference) == []
    assert reference["iaas"]["os"] == "you" and reference["iaas"]["virtualization"] == "provider"
    assert reference["paas"]["data"] == "you" and reference["paas"]["runtime"] == "provider"
    assert set(reference["saas"].values()) == {"provider"} and set(reference["on-premise"].values()) == {"you"}
    assert len(models.wrong_cells(models.matrix_template())) == len(models.LAYERS) * len(models.MODELS)
    assert len(models.wrong_cells(None)) == len(models.LAYERS) * len(models.MODELS)

    class App:
        scaling = None
    policy = platform.ScalingPolicy(App(), minimum=1, maximum=3, target_per_instance=20)
    assert [policy.desired(r) for r in (0, 5, 20, 21, 59, 500)] == [1, 1, 1, 2, 3, 3]
    for bad in ({"minimum": 0}, {"minimum": 3, "maximum": 2}, {"target_per_instance": 0}):
        with pytest.raises(cl.InvalidInput):
            platform.ScalingPolicy(App(), **bad)
