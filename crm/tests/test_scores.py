import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm.assignments import DEFAULT_EFFORT, Account, even_out_proposal
from crm.scores import effective_influence, influence_score


@pytest.mark.parametrize(
    ("followers", "score"),
    [(0, 0), (100, 4), (1_000, 6), (3_000, 7), (10_000, 8), (100_000, 10), (10**9, 10), (-5, 0)],
)
def test_influence_formula_vectors(followers, score):
    assert influence_score(followers) == score


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**12))
def test_influence_is_monotonic_and_bounded(a, b):
    low, high = sorted((a, b))
    assert 0 <= influence_score(low) <= influence_score(high) <= 10


def test_override_wins_over_computed():
    assert effective_influence(7, None) == 7
    assert effective_influence(7, 0) == 0


def test_even_out_balances_effort_not_count():
    # One heavy account (10) and five light ones (2 each): by count it would be 3/3; by effort
    # the heavy one stays alone on one side and the five light ones go to the other.
    accounts = [Account(1, 10)] + [Account(i, 2) for i in range(2, 7)]
    proposal = even_out_proposal(accounts, [100, 200])
    assert proposal.totals == {100: 10, 200: 10}
    assert proposal.counts == {100: 1, 200: 5}
    assert proposal.assignments[1] == 100


def test_even_out_unrated_counts_as_default_effort():
    proposal = even_out_proposal([Account(1, None), Account(2, 9)], [7, 8])
    assert proposal.totals == {7: 9, 8: DEFAULT_EFFORT}


def test_even_out_needs_staff():
    with pytest.raises(ValueError):
        even_out_proposal([Account(1, 3)], [])


@given(st.lists(st.integers(min_value=1, max_value=10), max_size=60), st.integers(1, 6))
def test_even_out_greedy_spread_is_within_max_effort(efforts, n_staff):
    accounts = [Account(i, e) for i, e in enumerate(efforts)]
    proposal = even_out_proposal(accounts, list(range(n_staff)))
    assert len(proposal.assignments) == len(accounts)
    assert sum(proposal.totals.values()) == sum(efforts)
    if efforts:
        assert max(proposal.totals.values()) - min(proposal.totals.values()) <= max(efforts)
