"""Survey scores (domain.md "Surveys"): pure functions over answer counts, no ORM.

Skipped answers are never counted: every denominator is the number of answers given. Each
score is None when there is no answer at all (an empty score, not zero).
"""

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal


def _pct(part: int, whole: int) -> Decimal:
    return Decimal(100) * part / whole


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def counts_from_values(values: Iterable[int | None]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for v in values:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    return counts


def nps(counts: Mapping[int, int]) -> int | None:
    """% of 9-10 minus % of 0-6, rounded half up to a whole number in -100..100."""
    total = sum(counts.values())
    if not total:
        return None
    promoters = sum(n for score, n in counts.items() if score >= 9)
    detractors = sum(n for score, n in counts.items() if score <= 6)
    return nps_from_totals(promoters=promoters, detractors=detractors, total=total)


def nps_from_totals(*, promoters: int, detractors: int, total: int) -> int | None:
    if not total:
        return None
    return _round(_pct(promoters, total) - _pct(detractors, total))


def csat(counts: Mapping[int, int]) -> int | None:
    """% of answers 4-5 (1-5 scale)."""
    total = sum(counts.values())
    satisfied = sum(n for score, n in counts.items() if score >= 4)
    return share_pct(satisfied, total)


def ces(counts: Mapping[int, int]) -> int | None:
    """% of answers 5-7 (1-7 scale, "the company made it easy for me")."""
    total = sum(counts.values())
    agreeing = sum(n for score, n in counts.items() if score >= 5)
    return share_pct(agreeing, total)


def share_pct(part: int, total: int) -> int | None:
    if not total:
        return None
    return _round(_pct(part, total))


def mean(counts: Mapping[int, int]) -> Decimal | None:
    """Mean answer, two decimals (shown beside CES)."""
    total = sum(counts.values())
    if not total:
        return None
    return (Decimal(sum(score * n for score, n in counts.items())) / total).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )


def nps_category(score: int | None) -> str | None:
    if score is None:
        return None
    if score >= 9:
        return "promoter"
    if score >= 7:
        return "passive"
    return "detractor"


def is_unhappy(kind: str, value: int | None) -> bool:
    """Unhappy answers create a follow-up: NPS 0-6 or CSAT 1-2."""
    if value is None:
        return False
    return (kind == "nps" and value <= 6) or (kind == "csat" and value <= 2)
