"""The one read behind every public survey request, in a single round trip.

The personal-link pages are the busiest pages of the system (a campaign to 100,000 customers
answered within minutes). The ORM version of this read (selectors.invitation_for_hash plus
selectors.survey_questions) costs two queries and most of a request's CPU in building them, so
on PostgreSQL this module reads the invitation, its campaign, survey and customer (only the
columns the pages use), whether it is answered or has a draft, and the survey's questions as
one JSON array, in one precompiled statement. The instances it returns are ordinary model
instances (other columns deferred), the same shape the ORM version gives. Other databases
(SQLite in `make run`) use the ORM version.
"""

from __future__ import annotations

import json
from functools import cache

from django.db import connection

from crm.models import Customer

from . import selectors
from .models import Campaign, Invitation, Question, Response, ResponseDraft, Survey

INVITATION_FIELDS = ("id", "campaign_id", "customer_id", "sent_at", "opened_at")
CAMPAIGN_FIELDS = ("id", "survey_id", "expires_at", "coupon_code")
SURVEY_FIELDS = ("id", "title_en", "title_ko", "intro_en", "intro_ko")
CUSTOMER_FIELDS = ("id", "first_name", "preferred_language", "owner_id")
QUESTION_FIELDS = (
    "id",
    "survey_id",
    "order",
    "kind",
    "text_en",
    "text_ko",
    "required",
    "options",
    "scale_min",
    "scale_max",
)


def _columns(model, alias: str, fields: tuple[str, ...]) -> list[str]:
    qn = connection.ops.quote_name
    return [f"{alias}.{qn(model._meta.get_field(f).column)}" for f in fields]


@cache
def _sql() -> str:
    qn = connection.ops.quote_name

    def table(model) -> str:
        return qn(model._meta.db_table)

    question_json = ", ".join(_columns(Question, "q", QUESTION_FIELDS))
    select = ", ".join(
        _columns(Invitation, "i", INVITATION_FIELDS)
        + _columns(Campaign, "c", CAMPAIGN_FIELDS)
        + _columns(Survey, "s", SURVEY_FIELDS)
        + _columns(Customer, "cu", CUSTOMER_FIELDS)
    )
    return (
        f"SELECT {select}, "  # noqa: S608 - identifiers from model metadata, values bound
        f"EXISTS (SELECT 1 FROM {table(Response)} r WHERE r.invitation_id = i.id), "
        f"EXISTS (SELECT 1 FROM {table(ResponseDraft)} d WHERE d.invitation_id = i.id), "
        f"(SELECT json_agg(json_build_array({question_json}) ORDER BY q.{qn('order')}, q.id) "
        f" FROM {table(Question)} q WHERE q.survey_id = c.survey_id) "
        f"FROM {table(Invitation)} i "
        f"JOIN {table(Campaign)} c ON c.id = i.campaign_id "
        f"JOIN {table(Survey)} s ON s.id = c.survey_id "
        f"JOIN {table(Customer)} cu ON cu.id = i.customer_id "
        "WHERE i.token_hash = %s OR i.reminder_token_hash = %s "
        "ORDER BY i.id LIMIT 1"
    )


def _instance(model, fields: tuple[str, ...], values) -> object:
    return model.from_db(connection.alias, list(fields), list(values))


def invitation_with_questions(digest: str) -> tuple[Invitation | None, list[Question]]:
    """The invitation for a link hash (campaign, survey and customer attached; `answered` and
    `has_draft` set) and its survey's questions in order; (None, []) for an unknown hash."""
    if not digest:
        return None, []
    if connection.vendor != "postgresql":
        invitation = selectors.invitation_for_hash(digest)
        if invitation is None:
            return None, []
        return invitation, selectors.survey_questions(invitation.campaign.survey)
    with connection.cursor() as cursor:
        cursor.execute(_sql(), [digest, digest])
        row = cursor.fetchone()
    if row is None:
        return None, []
    n_inv, n_cam, n_sur, n_cus = (
        len(INVITATION_FIELDS),
        len(CAMPAIGN_FIELDS),
        len(SURVEY_FIELDS),
        len(CUSTOMER_FIELDS),
    )
    at = 0
    invitation = _instance(Invitation, INVITATION_FIELDS, row[at : at + n_inv])
    at += n_inv
    campaign = _instance(Campaign, CAMPAIGN_FIELDS, row[at : at + n_cam])
    at += n_cam
    survey = _instance(Survey, SURVEY_FIELDS, row[at : at + n_sur])
    at += n_sur
    customer = _instance(Customer, CUSTOMER_FIELDS, row[at : at + n_cus])
    at += n_cus
    answered, has_draft, questions_json = row[at : at + 3]
    campaign.survey = survey
    invitation.campaign = campaign
    invitation.customer = customer
    invitation.answered = answered
    invitation.has_draft = has_draft
    if isinstance(questions_json, str):  # json (not jsonb) may come back as text
        questions_json = json.loads(questions_json)
    questions = [_instance(Question, QUESTION_FIELDS, q) for q in questions_json or []]
    for question in questions:
        question.survey = survey
    return invitation, questions
