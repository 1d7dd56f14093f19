"""Self-checks: the last cells of every lab read the live lab and say what is right.

A check is a statement about the running lab ("the server is ACTIVE", "the ETag
equals the MD5 of the file") and a way to test it.  Checks print one line each,
``✔`` or ``✘``, so that a learner sees at a glance what holds, and so that nbval,
which compares a stored notebook's outputs with a fresh run, fails when a check
that passed when the notebook was written fails now.

    with cl.Checklist("compute") as checks:
        checks.check("server is ACTIVE", lambda: server.status == "ACTIVE")
        checks.check("guest answers", lambda: server.run("true").ok)
"""

PASS = "\u2714"   # ✔
FAIL = "\u2718"   # ✘


def evaluate(condition):
    """Evaluate a check's condition: a bool, or a callable returning one.

    Returns a pair ``(ok, detail)``; an exception raised by the callable is a failed
    check whose detail names the exception, never a traceback.
    """
    if callable(condition):
        try:
            condition = condition()
        except Exception as exc:  # a check must report, not crash the notebook
            return False, f"{type(exc).__name__}: {exc}"
    return bool(condition), ""


def check(label, condition, hint=None):
    """Evaluate one check, print ``✔ label`` or ``✘ label: hint``, and return whether it held.

    Args:
        label: what is being checked, phrased as the thing that should be true.
        condition: a bool, or a callable returning a bool (evaluated now).
        hint: what to look at when the check fails.
    """
    ok, detail = evaluate(condition)
    line = f"{PASS if ok else FAIL} {label}"
    if not ok:
        extra = "; ".join(part for part in (detail, hint) if part)
        if extra:
            line += f": {extra}"
    print(line)
    return ok


class Checklist:
    """A group of checks that ends with a one-line summary.

    Use as a context manager; ``passed`` and ``failed`` count the results.
    """

    def __init__(self, title):
        self.title = title
        self.passed = 0
        self.failed = 0

    def check(self, label, condition, hint=None):
        """Run one check (see :func:`check`) and count it."""
        if check(label, condition, hint):
            self.passed += 1
        else:
            self.failed += 1
        return self

    @property
    def ok(self):
        """True when every check so far held."""
        return self.failed == 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        total = self.passed + self.failed
        print(f"{self.title}: {self.passed} of {total} checks passed")
        return False
