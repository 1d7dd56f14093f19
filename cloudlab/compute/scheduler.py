"""The scheduler (nova-scheduler's filter scheduler, in miniature): which compute node gets a server.

Nova places a server in two steps, and so does this module:

1. **filters** drop the hosts that cannot take it: a host that is down (Nova's
   ComputeFilter), one without the flavor's memory free (the RAM check Nova now asks
   Placement for), one without the vCPUs free (the CPU check), and, when the request
   names a host (``create_server(host=...)``, Nova's ``--host``), every other host;
2. **weighers** order the hosts that are left: Nova's RAMWeigher gives the host with
   the most free memory the highest weight, so servers *spread* over the hosts
   (``ram_weight_multiplier`` > 0, Nova's default); a negative multiplier *packs* them
   onto the fullest host that still fits, leaving whole hosts free.

No host left after the filters is Nova's "No valid host was found", with the reason
each host was filtered out.
"""

import dataclasses

SPREAD, PACK = "spread", "pack"
WEIGHERS = (SPREAD, PACK)


@dataclasses.dataclass
class Candidate:
    """One compute host as the scheduler sees it: what it has free now."""

    host: object          # the node (anything with ``hostname``)
    name: str
    up: bool
    free_ram_mib: int
    free_vcpus: int = None     # None: vCPUs are not counted on this host


def select(candidates, ram_mib, vcpus, weigher=SPREAD, wanted=None):
    """The candidate chosen for a server of ``ram_mib`` and ``vcpus``, and why each other was refused.

    Args:
        candidates: :class:`Candidate` objects.
        weigher: ``spread`` (most free memory first) or ``pack`` (least free memory that fits).
        wanted: the name of the one host the request asks for, or None.
    Returns:
        ``(chosen or None, {name: reason})``.
    """
    refused = {}
    fit = []
    for cand in candidates:
        if wanted is not None and cand.name != wanted:
            refused[cand.name] = "not the host asked for"
        elif not cand.up:
            refused[cand.name] = "down"
        elif cand.free_ram_mib < ram_mib:
            refused[cand.name] = f"{max(cand.free_ram_mib, 0)} MiB free, {ram_mib} MiB needed"
        elif cand.free_vcpus is not None and cand.free_vcpus < vcpus:
            refused[cand.name] = f"{max(cand.free_vcpus, 0)} vCPUs free, {vcpus} needed"
        else:
            fit.append(cand)
    if not fit:
        return None, refused
    sign = 1 if weigher == SPREAD else -1
    # the order of the list breaks ties, so equal hosts fill up in name order
    chosen = max(fit, key=lambda c: (sign * c.free_ram_mib, -candidates.index(c)))
    return chosen, refused
