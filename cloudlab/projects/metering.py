"""Measured service (계량): usage records of a project, and the bill they make.

A record says what a project held (a server of so many vCPUs, a volume of so many
GiB) from when to when; summed, they are server-hours, vCPU-hours and GiB-hours, as
OpenStack's metering (Ceilometer, CloudKitty for the prices) turns Nova's and
Cinder's events into a bill.  Every API call counts as a request.
"""

import dataclasses

# price per unit, in an imaginary currency (a public cloud's list prices are of this order, per hour)
PRICES = {"server_hours": 0.01, "vcpu_hours": 0.02, "gib_hours": 0.0002, "requests": 0.0001}


@dataclasses.dataclass
class UsageRecord:
    """One resource held: kind (server, container, volume, share), name, size, and when (seconds since the epoch)."""

    kind: str
    name: str
    vcpus: int = 0
    gib: int = 0
    started: float = 0.0
    ended: float = None

    def hours(self, until):
        """Hours held up to ``until`` (the end of the record, if it ended before)."""
        end = until if self.ended is None else min(self.ended, until)
        return max(0.0, end - self.started) / 3600


class Meter:
    """The usage records and request count of one project."""

    def __init__(self, clock):
        self.clock = clock
        self.records = []
        self.requests = {}

    def request(self, what):
        """Count one API call."""
        self.requests[what] = self.requests.get(what, 0) + 1

    def start(self, kind, name, vcpus=0, gib=0):
        """Open a record: the project holds this resource from now."""
        self.records.append(UsageRecord(kind, name, vcpus, gib, self.clock()))

    def stop(self, kind, name):
        """Close the open record of this resource."""
        for record in self.records:
            if record.kind == kind and record.name == name and record.ended is None:
                record.ended = self.clock()

    def totals(self, until=None):
        """``{"server_hours", "vcpu_hours", "gib_hours", "requests"}`` up to ``until`` (default: now)."""
        until = self.clock() if until is None else until
        compute = [r for r in self.records if r.kind in ("server", "container")]
        return {"server_hours": sum(r.hours(until) for r in compute),
                "vcpu_hours": sum(r.vcpus * r.hours(until) for r in compute),
                "gib_hours": sum(r.gib * r.hours(until) for r in self.records if r.kind in ("volume", "share")),
                "requests": sum(self.requests.values())}


@dataclasses.dataclass
class Bill:
    """A project's bill: one line per metered quantity (quantity, price, amount) and the total."""

    project: str
    lines: list
    total: float

    @classmethod
    def of(cls, project, usage, prices):
        """The bill for ``usage`` (from :meth:`Meter.totals`) at ``prices`` ({quantity: price per unit})."""
        lines = [(key, usage.get(key, 0), price, usage.get(key, 0) * price) for key, price in prices.items()]
        return cls(project, lines, sum(line[3] for line in lines))

    def __str__(self):
        rows = [f"bill of project {self.project}"]
        rows += [f"  {key:<13} {qty:>12.6f} x {price:<8g} = {amount:.6f}" for key, qty, price, amount in self.lines]
        rows.append(f"  {'total':<13} {'':>12}   {'':<8}   {self.total:.6f}")
        return "\n".join(rows)
