"""cloudlab: a tiny OpenStack-style cloud of real parts on one Linux machine, for teaching.

Start here::

    import cloudlab as cl
    lab = cl.Lab(cl.AllInOne())
"""

from . import platform, projects
from .teaching import diagrams, widgets
from .teaching.check import Checklist, check
from .teaching.exercise import check_exercise
from .doctor import run as doctor
from .errors import (CloudlabError, Conflict, HostUnreachable, InvalidInput, MissingPrerequisite,
                     NotFound, NoValidHost, QuotaExceeded, ResourceTimeout)
from .lab import Lab
from .topology import AllInOne, ThreeNode, Topology, TwoNode

__version__ = "0.1.0"

__all__ = [
    "Lab", "platform", "projects", "doctor", "diagrams", "widgets", "Topology", "AllInOne", "TwoNode", "ThreeNode", "check", "Checklist", "check_exercise",
    "CloudlabError", "InvalidInput", "NotFound", "Conflict", "ResourceTimeout",
    "MissingPrerequisite", "QuotaExceeded", "NoValidHost", "HostUnreachable",
]
