"""Checks for the arguments of public functions: the wrong type is an InvalidInput naming the argument.

Left to itself, Python reports a wrong type from deep inside a call (``TypeError:
unhashable type: 'dict'`` for ``create_server("x", flavor={"ram": 1})``), which names
neither the argument nor what it accepts.  Each check here returns the value (converted
where that is safe: an int timeout becomes a float) or raises
:class:`~cloudlab.errors.InvalidInput` with the argument's name and, as its fix, what
the argument accepts.  Checks run before anything is created, so a refused call
leaves nothing behind.
"""

import math
import numbers

from .errors import InvalidInput


def _refuse(argument, value, accepts, fix=None):
    raise InvalidInput(f"{argument} must be {accepts}, not {type(value).__name__} {value!r}",
                       fix=fix or f"give {argument} as {accepts}")


def text(value, argument, accepts="a string", fix=None):
    """``value`` when it is a ``str``.

    Raises:
        InvalidInput: it is not; the message names ``argument`` and what it ``accepts``.
    """
    if not isinstance(value, str):
        _refuse(argument, value, accepts, fix)
    return value


def number(value, argument, minimum=None, maximum=None, integer=False, accepts=None):
    """``value`` when it is a finite real number (not a bool) within [``minimum``, ``maximum``].

    Args:
        integer: only whole numbers (``int``) are accepted.
    Raises:
        InvalidInput: not such a number.
    """
    kind = "a whole number" if integer else "a number"
    if accepts is None:
        bounds = [f"from {minimum:g}" if minimum is not None else "", f"to {maximum:g}" if maximum is not None else ""]
        accepts = " ".join([kind] + [b for b in bounds if b])
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real):
        _refuse(argument, value, accepts)
    if not math.isfinite(value) or (minimum is not None and value < minimum) or \
            (maximum is not None and value > maximum):
        _refuse(argument, value, accepts)
    return value


def seconds(value, argument="timeout"):
    """``value`` as a float when it is a number of seconds, 0 or more.

    Raises:
        InvalidInput: not a finite number, or negative.
    """
    return float(number(value, argument, minimum=0, accepts="a number of seconds, 0 or more (e.g. 60)"))


def flag(value, argument):
    """``value`` when it is ``True`` or ``False``.

    Raises:
        InvalidInput: anything else (``"no"`` would otherwise count as true).
    """
    if not isinstance(value, bool):
        _refuse(argument, value, "True or False")
    return value


def one_of(value, argument, choices):
    """``value`` when it is one of ``choices``.

    Raises:
        InvalidInput: it is not; the fix lists the choices.
    """
    if not isinstance(value, str) or value not in choices:
        raise InvalidInput(f"{argument} must be one of {', '.join(choices)}, not {value!r}",
                           fix=f"use one of: {', '.join(choices)}")
    return value


def properties(value, argument="properties"):
    """``value`` as a new dict of strings (``None`` is ``{}``): what a service keeps beside a resource.

    The OpenStack API keeps a resource's project and user there (``project_id``, ``user_id``).

    Raises:
        InvalidInput: not a dict, or an entry that is not a non-empty string key with a string value.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        _refuse(argument, value, "a dict of strings")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str) or not key or len(key) > 255 or len(item) > 65535:
            raise InvalidInput(f"{argument} entry {key!r}={item!r} is not usable",
                               fix="give string keys (1-255 characters) and string values")
    return dict(value)
