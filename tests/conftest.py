"""Settings of the tests in tests/ (the settings of every run, notebooks included, are in ../conftest.py)."""

import os


def pytest_collection_finish(session):
    """Start the solved runs of the graded labs now, so they overlap the other tests (tests/test_labs_graded.py)."""
    wanted = [item for item in session.items if getattr(item, "originalname", None) == "test_reference_solutions_earn_every_point"]
    if wanted and os.environ.get("CLOUDLAB_SOLVED_IN_BACKGROUND", "1") != "0":
        wanted[0].module.start_solved_runs([item.callspec.params["path"] for item in wanted])
