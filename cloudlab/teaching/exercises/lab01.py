"""Lab 01 (cloud computing): the graded exercises' checks, read from the live lab.

They ask the lab's projects (their quotas, resources and usage records), the
platform's scaling history, and grade the on-premise / DIY / managed table.
"""

from ...projects import comparison
from ..exercise import Check, exercise


def _project(lab, name):
    try:
        return lab.projects.get_project(name)
    except Exception:
        return None


@exercise("01.1", title="A project held to its quota", points=2)
def quota(lab, answer=None):
    """Project teal with a quota of one container, holding one, and the error its second one got."""
    teal = _project(lab, "teal")
    yield Check("a project named teal exists", teal is not None, hint="lab.projects.create_project('teal', ...)")
    yield Check("its containers quota is 1", teal.quotas["containers"] == 1,
                hint="quotas={'containers': 1}, or teal.set_quota(containers=1)")
    yield Check("it holds one container", len(teal.list_containers()) == 1, hint="teal.create_container('app')")
    yield Check("answer is the name of the error a second container gets", answer == "QuotaExceeded",
                hint="try it inside try/except and take type(err).__name__")


@exercise("01.2", title="Measured service: price the usage yourself", points=2)
def bill(lab, answer=None):
    """Blue's bill up to a moment the learner chose, computed from the usage records and the prices."""
    blue = _project(lab, "blue")
    yield Check("project blue exists", blue is not None, hint="run the sections above")
    yield Check("answer is {'until': TIME, 'total': AMOUNT}",
                isinstance(answer, dict) and isinstance(answer.get("until"), (int, float))
                and isinstance(answer.get("total"), (int, float)),
                hint="until = time.time(); usage = blue.usage(until=until); then the sum of usage × price")
    expected = blue.bill(until=answer["until"]).total
    yield Check("the total is blue's usage at that time priced by cl.projects.PRICES",
                abs(answer["total"] - expected) <= 1e-9 + 1e-6 * expected,
                hint="every quantity of cl.projects.PRICES times its price, summed")


@exercise("01.3", title="On-premise, DIY on IaaS, managed cloud", points=3)
def table(lab, answer=None):
    """The comparison table, every cell True or False."""
    yield Check("answer is a table like cl.projects.comparison_template()",
                isinstance(answer, dict) and set(answer) == set(comparison.ROWS),
                hint="answer = cl.projects.comparison_template(), then fill in every cell")
    for way in comparison.WAYS:
        wrong = [row for row, w in comparison.wrong_cells(answer) if w == way]
        yield Check(f"the {way} column is right", not wrong, hint=f"look again at: {'; '.join(wrong)}")


@exercise("01.4", title="A group that grows and shrinks", points=2)
def elasticity(lab):
    """App shop with a scaling policy of 1..2 instances whose history grew to 2 and came back to 1."""
    try:
        shop = lab.platform.get_app("shop")
    except Exception:
        shop = None
    yield Check("an app named shop is deployed", shop is not None,
                hint="lab.platform.deploy(cl.platform.sample('notes'), name='shop')")
    policy = shop.scaling
    yield Check("it has a scaling policy of 1 to 2 instances",
                policy is not None and (policy.minimum, policy.maximum) == (1, 2),
                hint="cl.platform.ScalingPolicy(shop, minimum=1, maximum=2, target_per_instance=...)")
    sizes = [n for _, _, n in policy.history]
    yield Check("under load it grew to 2", 2 in sizes, hint="run load (lab.platform.load) while policy.run()")
    yield Check("after the load it came back to 1", 2 in sizes and 1 in sizes[sizes.index(2):],
                hint="keep policy.run() going a few seconds after the load ends")
