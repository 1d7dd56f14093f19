"""The guest agent, end to end: a real guest under plain QEMU, commands over virtio-serial.

One guest boots for the whole module (a few seconds under emulation); every test
talks to it through cloudlab.image.agent, the same code the compute service uses.
"""

import pytest

from cloudlab.image.agent import AGENT_CHANNEL, MAX_SOCKET_PATH, Agent, channel_xml
from cloudlab.errors import CloudlabError, InvalidInput, ResourceTimeout
from cloudlab.image import default_image
from cloudlab.host.qemu import RawGuest

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def guest():
    with RawGuest(default_image()) as g:
        g.wait_ready(60)
        yield g


def test_ready_marker_comes_after_the_root_disk(guest):
    console = list(guest.console)
    assert "cloudlab: root disk /dev/vda" in console
    assert console.index("cloudlab: root disk /dev/vda") < console.index("cloudlab-ready")


def test_command_output_and_exit_status(guest):
    result = guest.agent.run("echo out; echo err >&2; exit 3")
    assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok
    assert guest.agent.run("true").ok


def test_arguments_are_quoted_and_bytes_survive(guest):
    assert guest.agent.run(["printf", "%s|", "a b", "$HOME", "it's"]).stdout == "a b|$HOME|it's|"
    text = "line1\nλ unicode\n" + "x" * 5000
    assert guest.agent.run("cat", input=text).stdout == text


def test_the_guest_is_the_lab_system(guest):
    agent = guest.agent
    assert agent.run("uname -r").stdout.strip().endswith("-amd64")      # Debian's kernel
    assert "/dev/vda" in agent.run("mount").stdout                     # root on the overlay
    assert agent.run("cat /proc/cmdline").stdout.startswith("console=ttyS0")


def test_timeout_kills_the_command_and_agent_survives(guest):
    with pytest.raises(ResourceTimeout):
        guest.agent.run("sleep 30", timeout=1)
    assert guest.agent.run("echo still here").stdout == "still here\n"


def test_ping_and_bad_requests(guest):
    assert guest.agent.ping(5)
    with pytest.raises(InvalidInput):
        guest.agent.run("   ")


def test_unreachable_agent_names_the_problem(tmp_path):
    with pytest.raises(CloudlabError) as err:
        Agent(tmp_path / "nothing.sock").run("true")
    assert "cannot reach the guest agent" in str(err.value)
    assert not Agent(tmp_path / "nothing.sock").ping(0.2)


def test_channel_xml_and_socket_path_limit(tmp_path):
    xml = channel_xml(tmp_path / "a.sock")
    assert f"name='{AGENT_CHANNEL}'" in xml and "mode='bind'" in xml
    with pytest.raises(InvalidInput) as err:
        channel_xml("/" + "x" * MAX_SOCKET_PATH)
    assert "CLOUDLAB_HOME" in str(err.value)
