"""What every lab uses to teach: self-checks, graded exercises, diagrams and widgets."""

from .check import Checklist, check
from .exercise import Check, check_exercise
from .show import without_machine_paths, xml_excerpt

__all__ = ["Checklist", "check", "Check", "check_exercise", "xml_excerpt", "without_machine_paths"]
