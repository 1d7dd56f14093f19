"""What every lab uses to teach: self-checks, graded exercises, diagrams and widgets."""

from .check import Checklist, check

__all__ = ["Checklist", "check"]
