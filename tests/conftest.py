"""Test-wide settings.

Tests and notebooks always run the lab host inside a network namespace of their
own (HOST.md's traffic rule): `make test` sets CLOUDLAB_NETNS, and a bare
`pytest` run gets the same default here, before any kernel or server starts.
"""

import os

os.environ.setdefault("CLOUDLAB_NETNS", "cloudlab-test")
# notebooks under nbval and the grader print the widgets' plain-text form: a widget would leave
# only a random model id behind, and the text form is what the stored notebooks show
os.environ["CLOUDLAB_WIDGETS"] = "text"


def pytest_collection_finish(session):
    """Start the solved runs of the graded labs now, so they overlap the other tests (tests/test_labs_graded.py)."""
    wanted = [item for item in session.items if getattr(item, "originalname", None) == "test_reference_solutions_earn_every_point"]
    if wanted and os.environ.get("CLOUDLAB_SOLVED_IN_BACKGROUND", "1") != "0":
        wanted[0].module.start_solved_runs([item.callspec.params["path"] for item in wanted])
