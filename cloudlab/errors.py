"""Errors cloudlab raises: one base, a few kinds a learner can act on.

Every error carries a message that names what was wrong and, where there is one,
a ``fix``: the command or change that makes it right.  Low-level errors (libvirt,
socket, struct, OSError) are converted to these at the module boundary, so a
notebook never shows a learner a foreign traceback for a mistake they can fix.
"""


class CloudlabError(Exception):
    """Base of every error cloudlab raises.

    Args:
        message: what went wrong, in the learner's vocabulary.
        fix: optional command or action that fixes it.
    """

    def __init__(self, message, fix=None):
        self.message = message
        self.fix = fix
        super().__init__(message if not fix else f"{message}\n  fix: {fix}")


class InvalidInput(CloudlabError, ValueError):
    """A request was malformed: a bad name, size, flag or value."""


class NotFound(CloudlabError, LookupError):
    """The named resource (server, image, flavor, object ...) does not exist."""


class Conflict(CloudlabError):
    """The request conflicts with the current state (duplicate name, busy resource)."""


class ResourceTimeout(CloudlabError, TimeoutError):
    """Something did not reach the expected state in time."""


class MissingPrerequisite(CloudlabError):
    """The lab host lacks a program, package, daemon or resource; ``fix`` says how to get it."""


class HostUnreachable(MissingPrerequisite):
    """The lab host's libvirt daemon does not answer (stopped, killed, restarting); one fix: ``host up``.

    Every broken or refused libvirt connection reaches the learner as this error, with
    the same fix.  cloudlab reconnects by itself once the daemon is back, so the call
    after ``python -m cloudlab host up`` works in the same notebook kernel.
    """


class QuotaExceeded(CloudlabError):
    """The request goes past a limit set for the project (lab): instances, cores, memory, bytes."""


class NoValidHost(QuotaExceeded):
    """The scheduler found no host with room for the request (Nova's "No valid host was found").

    Not a quota: a quota is a limit per project, this is what the hosts have free.  It
    derives from QuotaExceeded only so that code written before it existed, which caught
    QuotaExceeded for a flavor too big for the host, keeps working.  ``server`` is the
    server the failure left in ERROR, when there is one (as Nova leaves it).
    """

    def __init__(self, message, fix=None, server=None):
        super().__init__(message, fix)
        self.server = server
