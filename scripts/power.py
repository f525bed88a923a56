"""Power of the two-sided Fisher exact test that the report uses (docs/pilots.md, issue 19 §7).

For true success rates ``p_a``, ``p_b`` and ``n`` networks per condition: the probability that
the test gives ``p < alpha`` (exact sum over both binomial outcomes), and the smallest ``n``
with power ≥ ``target``. Usage: ``python scripts/power.py 0.25 0.69 [alpha] [target]``.
"""

from __future__ import annotations

import sys
from functools import cache

from scipy.stats import binom, fisher_exact


@cache
def fisher(ka: int, kb: int, n: int) -> float:
    return float(fisher_exact([[ka, n - ka], [kb, n - kb]], alternative="two-sided").pvalue)


def power(pa: float, pb: float, n: int, alpha: float = 0.01) -> float:
    """P(Fisher p < alpha) with ``n`` per condition at true rates ``pa``, ``pb``."""
    wa, wb = binom.pmf(range(n + 1), n, pa), binom.pmf(range(n + 1), n, pb)
    return float(
        sum(wa[i] * wb[j] for i in range(n + 1) for j in range(n + 1) if fisher(i, j, n) < alpha)
    )


def smallest_n(pa: float, pb: float, alpha: float = 0.01, target: float = 0.9) -> int:
    n = 4
    while power(pa, pb, n, alpha) < target and n < 200:
        n += 2
    return n


if __name__ == "__main__":
    pa, pb = float(sys.argv[1]), float(sys.argv[2])
    alpha = float(sys.argv[3]) if len(sys.argv) > 3 else 0.01
    target = float(sys.argv[4]) if len(sys.argv) > 4 else 0.9
    for n in (10, 16, 24, 32, 40, 48):
        print(f"n={n}: power {power(pa, pb, n, alpha):.3f}")
    print(f"smallest n with power >= {target}: {smallest_n(pa, pb, alpha, target)}")
