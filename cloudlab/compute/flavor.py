"""Flavors (플레이버): named server sizes, as Nova has them.

A flavor says how big a server is: virtual CPUs, memory and root disk.  A
learner picks ``m1.small`` instead of typing three numbers, and an operator
decides which sizes exist.  The defaults are small enough that a 2-core,
24 GiB lab host runs ten servers at once under emulation.
"""

import dataclasses
import re

from ..errors import InvalidInput

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")


@dataclasses.dataclass(frozen=True)
class Flavor:
    """A server size: ``vcpus`` virtual CPUs, ``ram_mib`` MiB of memory, ``disk_gib`` GiB of root disk."""

    name: str
    vcpus: int
    ram_mib: int
    disk_gib: int

    def __post_init__(self):
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise InvalidInput(f"flavor name {self.name!r} is not valid",
                               fix="use 1-40 letters, digits, '.', '_' or '-', e.g. 'm1.large'")
        limits = {"vcpus": 64, "ram_mib": 1 << 20, "disk_gib": 4096}
        for field, top in limits.items():
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                raise InvalidInput(f"flavor {self.name}: {field}={value!r} is not usable",
                                   fix=f"give a whole number from 1 to {top}")

    def __str__(self):
        return f"{self.name}: {self.vcpus} vCPU, {self.ram_mib} MiB RAM, {self.disk_gib} GiB disk"


DEFAULT_FLAVORS = (
    Flavor("m1.tiny", 1, 128, 1),
    Flavor("m1.small", 1, 256, 2),
    Flavor("m1.medium", 2, 512, 4),
)
