"""One finished response per invitation under truly concurrent submits (real PostgreSQL
connections in two threads released together by a barrier; transactional test)."""

import threading

import pytest
from django.db import connection

from surveys import services
from surveys.answers import answers_parse
from surveys.models import Answer, Invitation, Response

from .survey_helpers import full_answers, make_invitation


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_submits_store_exactly_one_response():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    invitation, _ = make_invitation()
    survey = invitation.campaign.survey
    questions = list(survey.questions.all())
    data = full_answers(survey)
    raw = {k: v if isinstance(v, list) else [v] for k, v in data.items()}
    values = answers_parse(questions, raw, require_all=True).values
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def submit():
        from django.db import connection as thread_connection

        try:
            fresh = Invitation.objects.select_related("campaign__survey", "customer").get(
                pk=invitation.pk
            )
            barrier.wait(timeout=10)
            services.response_submit(
                invitation=fresh, questions=questions, values=values, language="en"
            )
            outcomes.append("saved")
        except services.AlreadyAnswered:
            outcomes.append("already")
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["already", "saved"]
    assert Response.objects.filter(invitation=invitation).count() == 1
    assert Answer.objects.count() == len(questions)


@pytest.mark.django_db(transaction=True)
def test_concurrent_single_statement_submits_store_exactly_one_response():
    """The usual response (happy, no draft, no outer transaction) is one INSERT ... CTE
    statement without BEGIN/COMMIT: the unique constraint still lets exactly one win."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    from surveys.public_selectors import invitation_with_questions

    invitation, _ = make_invitation()
    survey = invitation.campaign.survey
    data = full_answers(survey)
    raw = {k: v if isinstance(v, list) else [v] for k, v in data.items()}
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def submit():
        from django.db import connection as thread_connection

        try:
            fresh, questions = invitation_with_questions(invitation.token_hash)
            assert fresh.has_draft is False and not thread_connection.in_atomic_block
            values = answers_parse(questions, raw, require_all=True).values
            barrier.wait(timeout=10)
            services.response_submit(
                invitation=fresh, questions=questions, values=values, language="en"
            )
            outcomes.append("saved")
        except services.AlreadyAnswered:
            outcomes.append("already")
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["already", "already", "already", "saved"]
    assert Response.objects.filter(invitation=invitation).count() == 1
    assert Answer.objects.count() == survey.questions.count()
