"""Projects on real parts: isolation (another project's resource is NotFound), quotas that name
themselves, usage records and the bill; the ticket queue against self-service.

Unit tests use a clock of their own; the lab tests make real containers and a volume
(fast), so the lab tier adds a few seconds.
"""

import pytest

import cloudlab as cl
from cloudlab import config
from cloudlab.projects import metering, tickets


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_usage_records_become_hours_and_a_bill():
    clock = Clock()
    meter = metering.Meter(clock)
    meter.start("server", "web", vcpus=2)
    meter.start("volume", "data", gib=10)
    meter.request("create_server")
    clock.now += 1800                      # half an hour
    meter.stop("server", "web")
    clock.now += 1800
    totals = meter.totals()
    assert totals["server_hours"] == pytest.approx(0.5) and totals["vcpu_hours"] == pytest.approx(1.0)
    assert totals["gib_hours"] == pytest.approx(10.0) and totals["requests"] == 1
    assert meter.totals(until=1000 + 900)["gib_hours"] == pytest.approx(2.5)
    bill = metering.Bill.of("blue", totals, {"vcpu_hours": 2.0, "gib_hours": 0.1})
    assert bill.total == pytest.approx(2.0 + 1.0) and "total" in str(bill)


def test_the_ticket_queue_counts_working_hours_and_then_uses_the_same_api():
    made = []

    class Compute:
        def create_server(self, name, flavor):
            made.append((name, flavor))
            return name

    queue = tickets.TicketQueue(Compute(), seconds_per_hour=0, seed=1)
    ticket = queue.request_server("web", progress=None)
    assert made == [("web", "m1.tiny")] and ticket.server == "web"
    assert len(ticket.steps) == len(tickets.STEPS)
    assert sum(low for *_, (low, _) in tickets.STEPS) <= ticket.working_hours
    assert ticket.working_days == ticket.working_hours / 8


def test_project_names_and_quotas_are_checked():
    projects = cl.projects.Projects(lab=None)
    with pytest.raises(cl.InvalidInput):
        projects.create_project("Blue Team")
    blue = projects.create_project("blue", quotas={"servers": 1})
    assert blue.quotas["servers"] == 1 and blue.quotas["vcpus"] == cl.projects.DEFAULT_QUOTAS["vcpus"]
    with pytest.raises(cl.Conflict):
        projects.create_project("blue")
    with pytest.raises(cl.InvalidInput, match="no quota called"):
        blue.set_quota(cpus=3)
    with pytest.raises(cl.NotFound):
        projects.get_project("red")


# -- on the lab ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    lab = cl.Lab(name="projtest")
    yield lab
    lab.stop()


@pytest.mark.lab
def test_projects_are_isolated_and_held_to_their_quotas(lab):
    blue = lab.projects.create_project("blue", quotas={"containers": 2, "vcpus": 2})
    red = lab.projects.create_project("red", quotas={"containers": 1})
    blue.create_container("web")
    red.create_container("web")                            # the same name in another project
    assert blue.list_containers() == ["web"] and red.list_containers() == ["web"]
    assert blue.get_container("web").name == "blue.web" and red.get_container("web").name == "red.web"
    with pytest.raises(cl.NotFound, match="in project red"):
        red.get_container("blue.web")                      # blue's, by its full name: still not red's
    with pytest.raises(cl.NotFound):
        red.delete_container("db")
    with pytest.raises(cl.QuotaExceeded, match="quota 'containers' is 1, 1 in use"):
        red.create_container("second")
    with pytest.raises(cl.QuotaExceeded, match="quota 'vcpus' is 2, 1 in use, and 2 more"):
        blue.create_container("big", flavor="m1.medium")
    assert red.list_containers() == ["web"] and blue.list_containers() == ["web"]     # nothing half-made
    assert blue.quota_usage()["containers"] == 1 and blue.quota_usage()["vcpus"] == 1


@pytest.mark.lab
def test_volumes_belong_to_their_project_and_count_gib_hours(lab):
    green = lab.projects.create_project("green", quotas={"volumes": 1, "gigabytes": 2})
    green.create_volume("data", size=2)
    with pytest.raises(cl.QuotaExceeded, match="quota 'volumes' is 1"):
        green.create_volume("more", size=1)
    other = lab.projects.create_project("other")
    with pytest.raises(cl.NotFound):
        other.get_volume("data")
    assert green.usage()["gib_hours"] > 0 and green.usage()["requests"] == 2
    bill = green.bill()
    assert bill.total > 0 and bill.project == "green"
    green.delete_volume("data")
    assert green.list_volumes() == []


def test_the_comparison_table_is_graded_cell_by_cell():
    from cloudlab.projects import comparison
    truth = {row: dict(cells) for row, cells in comparison.ROWS.items()}
    assert comparison.wrong_cells(truth) == []
    truth["you install and patch the operating system"]["managed"] = True
    assert comparison.wrong_cells(truth) == [("you install and patch the operating system", "managed")]
    assert len(comparison.wrong_cells(cl.projects.comparison_template())) == len(comparison.ROWS) * 3


@pytest.mark.lab
def test_objects_belong_to_their_project(lab):
    blue = lab.projects.create_project("objblue")
    red = lab.projects.create_project("objred")
    blue.put_object("docs", "plan.txt", b"blue's plan")
    assert blue.get_object("docs", "plan.txt") == b"blue's plan" and blue.list_objects("docs") == ["plan.txt"]
    with pytest.raises(cl.NotFound, match="in project objred"):
        red.get_object("docs", "plan.txt")
    with pytest.raises(cl.NotFound):
        red.list_objects("docs")
    assert blue.usage()["requests"] == 3


@pytest.mark.lab
def test_shares_belong_to_their_project_within_its_quota(lab):
    teal = lab.projects.create_project("teal", quotas={"shares": 1, "share_gigabytes": 1})
    teal.create_share("docs", size=1)
    with pytest.raises(cl.QuotaExceeded, match="quota 'shares' is 1, 1 in use"):
        teal.create_share("more", size=1)
    other = lab.projects.create_project("tealother")
    with pytest.raises(cl.NotFound, match="in project tealother"):
        other.get_share("docs")
    assert teal.quota_usage()["share_gigabytes"] == 1 and teal.usage()["gib_hours"] > 0
    teal.delete_share("docs")
    assert teal.list_shares() == []


@pytest.mark.lab
@pytest.mark.slow
def test_projects_are_keystones_when_the_identity_service_runs():
    if not config.netns():
        pytest.skip("lab tests run inside a network namespace: set CLOUDLAB_NETNS (make test does)")
    lab = cl.Lab(name="projks")
    try:
        identity = lab.identity                          # a real Keystone
        plain = cl.Lab(name="projks2").projects.create_project("plain")
        assert plain.keystone_id is None                 # no identity service there: no Keystone call
        coral = lab.projects.create_project("coral")
        assert coral.keystone_id is not None and coral.keystone_id == identity.project_id("coral")
        found = identity.client.find("projects", "coral")
        assert found is not None and found["id"] == coral.keystone_id
    finally:
        lab.stop()
