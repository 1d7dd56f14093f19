"""Widgets: ipywidgets in a notebook, the same facts as plain text everywhere else (nbval, terminals).

The server here runs on libvirt's test driver (no guest): the test writes the console lines a
guest's init would write, and the boot progress must walk through every stage once, in order.
"""

import threading
import time

import pytest

from cloudlab import compute as compute_mod
from cloudlab.teaching import widgets
from tests.test_compute_api import NODE_XML, ready

import cloudlab as cl


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLAB_HOME", str(tmp_path / "home"))
    lab = cl.Lab(name="widgets")
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    host = compute_mod.LibvirtHost(f"test://{node}")
    lab._services["compute"] = compute_mod.Compute(lab, host=host).start()     # a lab whose compute is the test driver
    lab.started = True
    yield lab
    lab.stop()
    host.stop()


def test_outside_a_kernel_widgets_fall_back_to_text(monkeypatch):
    assert widgets.use_widgets() is False          # plain python: no Jupyter kernel
    monkeypatch.setenv("CLOUDLAB_WIDGETS", "text")
    assert widgets.use_widgets() is False


def test_progress_text_and_widget(capsys):
    bar = widgets.Progress("demo", 3, widgets=False)
    bar.step("one")
    bar.finish("done")
    assert capsys.readouterr().out == "demo: one\ndemo: done\n"
    bar = widgets.Progress("demo", 3, widgets=True)
    bar.step("one")
    bar.step("three", done=3)
    assert (bar._bar.value, bar._bar.max) == (3, 3) and "three" in bar._label.value
    bar.finish("failed", ok=False)
    assert bar._bar.bar_style == "danger"


def test_boot_progress_shows_every_stage_once_in_order(lab, capsys):
    server = lab.compute.create_server("web1", wait=False)

    def guest():
        time.sleep(0.3)
        with open(server.console_path, "ab") as f:
            f.write(b"Linux version 6.1\r\n")
        time.sleep(0.3)
        ready(server)
    threading.Thread(target=guest).start()
    assert widgets.wait(server, timeout=10, widgets=False) is server
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [f"web1 boots: {text}" for _, text in widgets.BOOT_STAGES]
    assert lines[4].startswith("web1 boots: ACTIVE after ") and len(lines) == 5
    # a boot that fails says so, and raises
    server.stop()
    server.start(wait=False)
    with pytest.raises(cl.ResourceTimeout):
        widgets.wait(server, timeout=0.3, widgets=True)


def test_status_view_lists_servers_and_refreshes(lab, capsys):
    web1 = lab.compute.create_server("web1", wait=False)
    lab.compute.create_server("web2", wait=False)
    ready(web1)
    view = widgets.status(lab, widgets=False)
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "lab widgets: services compute, image"     # image: the server asked for it
    assert text.splitlines()[1].split() == list(widgets.StatusView.HEADER)
    assert text.splitlines()[2].split()[:4] == ["web1", "ACTIVE", "RUNNING", "m1.tiny"]
    assert text.splitlines()[3].split()[:2] == ["web2", "BUILD"]
    assert view.rows()[0][4].count(".") == 3       # the test driver's DHCP address
    live = widgets.status(lab, interval=0.05, duration=5, widgets=True)
    assert "web2" in live._html.value and "BUILD" in live._html.value
    ready(lab.compute.get_server("web2"))
    deadline = time.monotonic() + 5
    while "BUILD" in live._html.value and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "BUILD" not in live._html.value and live._html.value.count("ACTIVE") == 2     # refreshed by itself
    live.stop()
