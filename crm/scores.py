"""Pure score functions (no ORM): the formulas of domain.md."""

import math

INFLUENCE_MIN = 0
INFLUENCE_MAX = 10


def influence_score(total_followers: int) -> int:
    """clamp(round(2 x log10(1 + total followers)), 0, 10).

    0 -> 0, 100 -> 4, 1,000 -> 6, 3,000 -> 7, 10,000 -> 8, 100,000 -> 10. Negative input is
    treated as 0. 2 x log10(1 + n) is never exactly k + 0.5 for an integer n, so the rounding
    rule (half-even here, half-up in PostgreSQL) never matters.
    """
    followers = max(int(total_followers or 0), 0)
    return max(INFLUENCE_MIN, min(INFLUENCE_MAX, round(2 * math.log10(1 + followers))))


def effective_influence(computed: int, override: int | None) -> int:
    """The override where set, else the computed score."""
    return computed if override is None else override
