"""A ticket queue: how a server was provisioned before self-service (the note's "가상화 업무").

The note contrasts the two ways: in classic virtualization "고객의 서비스 요구에 따라 각
요소별 전문가들이 역할을 수행하여 구성되는" (each request goes through specialists, one
after another), while a cloud gives "Self-Provisioning 또는 단일화된 창구".  This queue
plays the first: each approval step waits for its team, for a time drawn from that
team's usual delay (in working hours), and only the last step creates the server,
through the same compute API that self-service calls directly.

Time is compressed: one working hour passes in ``seconds_per_hour`` real seconds, so
a lab cell can run the whole queue; :attr:`Ticket.working_hours` says what it would take.
"""

import dataclasses
import random
import time

# (team, what they do, (least, most) working hours before they get to it)
STEPS = (
    ("requester's manager", "approve the request", (2, 16)),
    ("capacity planning", "check that a host has room", (4, 24)),
    ("network team", "assign an address and open the firewall", (4, 40)),
    ("storage team", "carve out a disk", (2, 24)),
    ("virtualization admins", "build the VM", (1, 8)),
)


@dataclasses.dataclass
class Ticket:
    """One request's way through the queue: each step's hours, then the server."""

    number: int
    steps: list
    server: object = None
    wall_s: float = 0.0

    @property
    def working_hours(self):
        """Working hours the request would take (the sum of its steps' waits)."""
        return sum(hours for _, _, hours in self.steps)

    @property
    def working_days(self):
        """The same in 8-hour working days."""
        return self.working_hours / 8


class TicketQueue:
    """A simulated ticket queue in front of a compute service.

    Args:
        compute: what finally creates the server (a lab's ``compute`` or a project).
        seconds_per_hour: real seconds one working hour takes here.
        seed: the random generator's seed (the same seed, the same waits).
    """

    def __init__(self, compute, seconds_per_hour=0.05, seed=2019):
        self.compute = compute
        self.seconds_per_hour = seconds_per_hour
        self.random = random.Random(seed)
        self.tickets = []

    def request_server(self, name, flavor="m1.tiny", progress=print):
        """File a ticket for a server and wait for it to pass every step; returns the :class:`Ticket`."""
        ticket = Ticket(len(self.tickets) + 1, [])
        self.tickets.append(ticket)
        started = time.monotonic()
        for team, task, (least, most) in STEPS:
            hours = self.random.randint(least, most)
            if progress:
                progress(f"ticket #{ticket.number}: waiting {hours:>2} working hours for the {team} to {task}")
            time.sleep(hours * self.seconds_per_hour)
            ticket.steps.append((team, task, hours))
        ticket.server = self.compute.create_server(name, flavor=flavor)
        ticket.wall_s = time.monotonic() - started
        if progress:
            progress(f"ticket #{ticket.number}: server {name} delivered after {ticket.working_hours} working hours "
                     f"({ticket.working_days:.1f} working days)")
        return ticket
