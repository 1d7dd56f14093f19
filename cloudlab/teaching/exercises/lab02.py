"""Lab 02 (service models): the graded exercises' checks, read from the live lab.

Each check asks the running platform (its apps, their instances, HAProxy's view of
them) or sends real HTTP requests through an app's route from the lab's network.
"""

from ...platform import models
from ..exercise import Check, exercise


def _app(lab, name):
    try:
        return lab.platform.get_app(name)
    except Exception:
        return None


@exercise("02.1", title="Hand a platform only your code", points=2)
def static_site_on_paas(lab):
    """An app named site, recognised as a static site, whose route answers 'hello from PaaS'."""
    app = _app(lab, "site")
    yield Check("an app named site is deployed", app is not None,
                hint="make a folder with an index.html, then lab.platform.deploy(folder, name='site')")
    yield Check("the platform recognised it as a static site", app.buildpack == "static",
                hint=f"it was recognised as {app.buildpack}: keep only an index.html in the folder")
    answer = app.get("/")
    yield Check("its route answers 200 with 'hello from PaaS'", answer.status == 200 and "hello from PaaS" in answer.text,
                hint=f"the route answered {answer.status}: {answer.text[:80]!r}")


@exercise("02.2", title="Who manages what", points=3)
def who_manages_what(lab, answer=None):
    """The who-manages-what matrix, every cell 'you' or 'provider'."""
    yield Check("answer is a matrix like cl.platform.matrix_template()",
                isinstance(answer, dict) and set(answer) == set(models.MODELS),
                hint="answer = cl.platform.matrix_template(), then fill in every cell")
    for model in models.MODELS:
        wrong = [layer for m, layer in models.wrong_cells(answer) if m == model]
        yield Check(f"the {model} column is right", not wrong,
                    hint=f"look again at: {', '.join(wrong)}")


@exercise("02.3", title="Scale out and see the balancer spread the load", points=2)
def scale_out(lab, answer=None):
    """notes at 3 instances, all UP, and the set of instances that answered the learner's requests."""
    app = _app(lab, "notes")
    yield Check("the app notes is deployed", app is not None, hint="run the PaaS section above")
    yield Check("it runs 3 instances", len(app.instances) == 3, hint="app.scale(3)")
    yield Check("HAProxy has all 3 UP", [b["status"] for b in app.backends()] == ["UP"] * 3,
                hint="app.wait_healthy()")
    yield Check("answer is the set of instance names that served your requests (X-Served-By)",
                isinstance(answer, (set, list, tuple)) and set(answer) == set(app.instances),
                hint="{app.get('/cgi-bin/notes').headers['x-served-by'] for _ in range(6)}")


@exercise("02.4", title="Be a SaaS tenant", points=2)
def saas_tenant(lab, answer=None):
    """A note 'cloudlab' kept for tenant myco by the SaaS app, and the instance that answered."""
    app = _app(lab, "saas")
    yield Check("the SaaS app runs", app is not None, hint="run the SaaS section above")
    page = app.get("/cgi-bin/notes?tenant=myco")
    yield Check("tenant myco has a note 'cloudlab'", "cloudlab" in page.text.splitlines()[1:],
                hint="app.post('/cgi-bin/notes', 'cloudlab', tenant='myco')")
    yield Check("answer names the instance that serves it", answer == page.headers.get("x-served-by"),
                hint="the X-Served-By header of the answer")
