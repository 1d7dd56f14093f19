"""Choosing among several sources: the intersection algorithm, and falsetickers.

A client with several upstreams must decide which of them tell the truth.  Each
source's sample says "the true offset lies within θ ± λ", where λ, its *root
distance*, bounds the error: half the round trip (the most an asymmetric path can
shift θ) plus what its own upstreams may be off by.  The true time must then lie
where the intervals of a **majority** of sources overlap.  RFC 5905's selection
(Marzullo's algorithm as ntpd and chrony use it) finds the smallest interval that
``m - f`` of the ``m`` intervals share, allowing ``f = 0, 1, ...`` liars while they
are fewer than half; sources whose interval misses it are **falsetickers** and are
ignored, the others are **truechimers**.  With no majority there is no answer, and
a careful client keeps its clock as it is rather than follow anyone.

Two lessons follow: one wrong source among three is out-voted, but two wrong
sources that agree out-vote the right one (a majority, not the truth, wins), which
is why real configurations use four or more independent sources.

On a quiet LAN λ can be tens of microseconds, smaller than the jitter between two
honest sources; like ntpd (``tos mindist``, 1 ms) every interval is at least
``MIN_DISTANCE`` wide on each side.
"""

MIN_DISTANCE = 0.001


def intersect(intervals):
    """The interval a majority of ``intervals`` share, and who is in it.

    Args:
        intervals: a list of ``(offset, distance)``: each source says the truth is in
            ``offset ± distance`` (distance is widened to at least ``MIN_DISTANCE``).
    Returns:
        ``(truechimers, (low, high))``: the indices of the sources whose interval meets
        the majority's, and that interval; ``([], None)`` when no majority agrees.
    """
    bounds = [(theta - max(lam, MIN_DISTANCE), theta + max(lam, MIN_DISTANCE)) for theta, lam in intervals]
    m = len(bounds)
    # starts sort before ends at the same point, so intervals that touch count as overlapping
    edges = sorted([(lo, -1) for lo, _ in bounds] + [(hi, +1) for _, hi in bounds])
    f = 0
    while 2 * f < m:
        need = m - f
        low = high = None
        count = 0
        for point, kind in edges:
            count -= kind            # +1 at a start, -1 at an end
            if count >= need:
                low = point
                break
        count = 0
        for point, kind in reversed(edges):
            count += kind            # walking down, an end opens an interval
            if count >= need:
                high = point
                break
        if low is not None and high is not None and low <= high:
            chimers = [i for i, (lo, hi) in enumerate(bounds) if hi >= low and lo <= high]
            return chimers, (low, high)
        f += 1
    return [], None
