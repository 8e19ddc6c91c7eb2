"""Pure domain functions: score formulas (domain.md test vectors), tokens, working days."""

import datetime as dt
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from surveys import scores, tokens
from surveys.workdays import add_working_days


def test_nps_vector_50_promoters_10_detractors_is_40():
    assert scores.nps({10: 30, 9: 20, 8: 25, 7: 15, 3: 10}) == 40


def test_csat_vector_74_of_107_is_69():
    assert scores.csat({5: 42, 4: 32, 3: 10, 2: 9, 1: 14}) == 69


def test_ces_vector_10_of_20_is_50_and_mean_shown():
    counts = {7: 5, 5: 5, 4: 4, 1: 6}
    assert scores.ces(counts) == 50
    assert scores.mean(counts) == Decimal("4.10")  # (35 + 25 + 16 + 6) / 20


def test_skipped_answers_leave_the_denominator():
    # None are skipped answers: they must not count as detractors or as answers.
    assert scores.nps(scores.counts_from_values([10, None, None, 0])) == 0
    assert scores.csat(scores.counts_from_values([5, None])) == 100


def test_empty_scores_are_none_not_zero():
    assert scores.nps({}) is None
    assert scores.csat({}) is None
    assert scores.ces({}) is None
    assert scores.mean({}) is None


@given(st.dictionaries(st.integers(0, 10), st.integers(0, 1000), min_size=1))
def test_nps_is_bounded(counts):
    value = scores.nps(counts)
    if sum(counts.values()) == 0:
        assert value is None
    else:
        assert -100 <= value <= 100


def test_unhappy_is_nps_0_6_or_csat_1_2():
    assert scores.is_unhappy("nps", 6) and not scores.is_unhappy("nps", 7)
    assert scores.is_unhappy("csat", 2) and not scores.is_unhappy("csat", 3)
    assert not scores.is_unhappy("ces", 1)
    assert not scores.is_unhappy("nps", None)


def test_tokens_are_long_random_and_hashed():
    token, digest = tokens.token_pair()
    assert len(token) == 43 and tokens.token_is_well_formed(token)
    assert digest == tokens.token_hash(token) and len(digest) == 64 and token not in digest
    assert tokens.token_new() != tokens.token_new()
    assert not tokens.token_is_well_formed(token[:-1])
    assert not tokens.token_is_well_formed(token[:-1] + "!")


def test_working_days_skip_weekends():
    monday = dt.date(2026, 11, 23)
    assert add_working_days(monday, 2) == dt.date(2026, 11, 25)
    assert add_working_days(dt.date(2026, 11, 26), 2) == dt.date(2026, 11, 30)  # Thu -> Mon
    assert add_working_days(dt.date(2026, 11, 27), 2) == dt.date(2026, 12, 1)  # Fri -> Tue
    assert add_working_days(dt.date(2026, 11, 28), 2) == dt.date(2026, 12, 1)  # Sat -> Tue
