"""What every lab uses to teach: self-checks, graded exercises, diagrams and widgets."""

from .check import Checklist, check
from .exercise import Check, check_exercise

__all__ = ["Checklist", "check", "Check", "check_exercise"]
