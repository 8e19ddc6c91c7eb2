"""Even out account ownership over staff by total service effort (pure, no ORM)."""

from dataclasses import dataclass, field

DEFAULT_EFFORT = 5  # accounts without a rating count as a middling effort; said on screen


@dataclass(frozen=True)
class Account:
    customer_id: int
    effort: int | None


@dataclass
class Proposal:
    """Who gets which account, and each staff member's total effort and account count."""

    assignments: dict[int, int] = field(default_factory=dict)  # customer_id -> staff_id
    totals: dict[int, int] = field(default_factory=dict)  # staff_id -> total effort
    counts: dict[int, int] = field(default_factory=dict)  # staff_id -> number of accounts


def even_out_proposal(accounts: list[Account], staff_ids: list[int]) -> Proposal:
    """Greedy balancing by effort, not count: accounts sorted by effort (desc, then id) each go
    to the staff member with the least total effort so far (ties: the first in staff_ids).
    Accounts without effort count as DEFAULT_EFFORT. Deterministic for the same input.
    """
    staff_ids = list(dict.fromkeys(staff_ids))
    if not staff_ids:
        raise ValueError("at least one staff member is needed")
    proposal = Proposal(totals=dict.fromkeys(staff_ids, 0), counts=dict.fromkeys(staff_ids, 0))
    order = {staff_id: i for i, staff_id in enumerate(staff_ids)}
    ranked = sorted(
        accounts,
        key=lambda a: (-(a.effort if a.effort is not None else DEFAULT_EFFORT), a.customer_id),
    )
    for account in ranked:
        effort = account.effort if account.effort is not None else DEFAULT_EFFORT
        target = min(staff_ids, key=lambda s: (proposal.totals[s], order[s]))
        proposal.assignments[account.customer_id] = target
        proposal.totals[target] += effort
        proposal.counts[target] += 1
    return proposal
