"""Writes for surveys: the builder, campaigns and their emails, responses and close-the-loop.

Every function is keyword-only and says what it guarantees. Validation errors are
django.core.exceptions.ValidationError with a message naming the field and the reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import BooleanField, Case, Exists, OuterRef, Subquery, Value, When
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from crm.models import Customer, FollowUp, FollowUpSource

from . import scores, selectors, tokens
from .models import (
    CHOICE_KINDS,
    Answer,
    Campaign,
    Invitation,
    Question,
    QuestionKind,
    Response,
    ResponseDraft,
    Survey,
)
from .workdays import add_working_days

logger = logging.getLogger(__name__)

SEND_BATCH_SIZE = 500
DEFAULT_EXPIRY_DAYS = 30
FOLLOW_UP_WORKING_DAYS = 2


class AlreadyAnswered(Exception):
    """The invitation already has its finished response."""


class LinkExpired(Exception):
    """The campaign's links have expired."""


# --- Builder -------------------------------------------------------------------------------


def survey_create(
    *, title_en: str, title_ko: str = "", intro_en: str = "", intro_ko: str = "", created_by
) -> Survey:
    """Create an empty survey. Raises ValidationError on bad input."""
    survey = Survey(
        title_en=title_en.strip(),
        title_ko=title_ko.strip(),
        intro_en=intro_en.strip(),
        intro_ko=intro_ko.strip(),
        created_by=created_by,
    )
    survey.full_clean()
    survey.save()
    return survey


def survey_update(
    *, survey: Survey, title_en: str, title_ko: str = "", intro_en: str = "", intro_ko: str = ""
) -> Survey:
    """Change a survey's texts. Raises ValidationError on bad input."""
    survey.title_en, survey.title_ko = title_en.strip(), title_ko.strip()
    survey.intro_en, survey.intro_ko = intro_en.strip(), intro_ko.strip()
    # Only the texts change: a creator deleted since (SET_NULL) must not block the edit.
    survey.full_clean(exclude=["created_by"])
    survey.save(update_fields=["title_en", "title_ko", "intro_en", "intro_ko", "updated_at"])
    return survey


def parse_options(text: str) -> list[dict[str, str]]:
    """Options typed one per line as "value | English label | Korean label" (labels optional).
    Raises ValidationError naming the line at fault."""
    options: list[dict[str, str]] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) > 3 or not parts[0]:
            raise ValidationError(
                {"options": _("Line %(n)d: write value | English | Korean.") % {"n": number}}
            )
        value = parts[0][:50]
        if value in seen:
            raise ValidationError(
                {
                    "options": _("Line %(n)d: the value %(v)s is used twice.")
                    % {"n": number, "v": value}
                }
            )
        seen.add(value)
        en = parts[1] if len(parts) > 1 and parts[1] else value
        ko = parts[2] if len(parts) > 2 else ""
        options.append({"value": value, "en": en[:200], "ko": ko[:200]})
    return options


@transaction.atomic
def question_add(
    *,
    survey: Survey,
    kind: str,
    text_en: str,
    text_ko: str = "",
    required: bool = True,
    options: list[dict[str, str]] | None = None,
    scale_min: int | None = None,
    scale_max: int | None = None,
) -> Question:
    """Append a question at the end of the survey (atomic; the survey row is locked so two
    managers adding at once get consecutive positions). Raises ValidationError."""
    options = options or []
    if kind in CHOICE_KINDS and len(options) < 2:
        raise ValidationError({"options": _("A choice question needs at least two options.")})
    if kind not in CHOICE_KINDS:
        options = []
    if kind == QuestionKind.RATING:
        if scale_min is None or scale_max is None:
            raise ValidationError({"scale_min": _("A rating question needs a scale, e.g. 1 to 5.")})
        if not (-100 <= scale_min < scale_max <= 100) or scale_max - scale_min > 20:
            raise ValidationError(
                {"scale_max": _("The scale must go up, span at most 20 steps, within -100..100.")}
            )
    else:
        scale_min = scale_max = None
    Survey.objects.select_for_update().filter(pk=survey.pk).first()
    last = survey.questions.order_by("-order").values_list("order", flat=True).first() or 0
    question = Question(
        survey=survey,
        order=last + 1,
        kind=kind,
        text_en=text_en.strip(),
        text_ko=text_ko.strip(),
        required=required,
        options=options,
        scale_min=scale_min,
        scale_max=scale_max,
    )
    question.full_clean()
    question.save()
    return question


def question_update(
    *,
    question: Question,
    text_en: str,
    text_ko: str = "",
    required: bool = True,
    options: list[dict[str, str]] | None = None,
) -> Question:
    """Change a question's wording, whether it is required, and (choice kinds) its options.
    Once answers exist, option values may not change (labels may). Raises ValidationError."""
    if question.kind in CHOICE_KINDS:
        options = options or []
        if len(options) < 2:
            raise ValidationError({"options": _("A choice question needs at least two options.")})
        old_values = {str(o["value"]) for o in question.options}
        if {o["value"] for o in options} != old_values and question.answers.exists():
            raise ValidationError(
                {"options": _("This question has answers: relabel options, but keep their values.")}
            )
        question.options = options
    question.text_en, question.text_ko = text_en.strip(), text_ko.strip()
    question.required = required
    question.full_clean()
    question.save(update_fields=["text_en", "text_ko", "required", "options"])
    return question


def question_remove(*, question: Question) -> None:
    """Delete a question that has no answers yet. Raises ValidationError otherwise (answers
    already given would lose their meaning)."""
    if question.answers.exists():
        raise ValidationError(_("This question already has answers and cannot be removed."))
    question.delete()


# --- Campaigns -----------------------------------------------------------------------------


def campaign_create(
    *,
    survey: Survey,
    name: str,
    audience_kind: str,
    audience_query: str = "",
    audience_customer: Customer | None = None,
    audience_bucket_id: int | None = None,
    expires_at: dt.datetime | None = None,
    coupon_code: str = "",
    reminder_after_days: int | None = 7,
    created_by,
) -> Campaign:
    """Create a campaign (nothing is sent yet). Raises ValidationError when the survey has no
    questions, the audience is malformed or empty, or the expiry is in the past."""
    if not survey.questions.exists():
        raise ValidationError({"survey": _("This survey has no questions yet.")})
    now = timezone.now()
    expires_at = expires_at or now + dt.timedelta(days=DEFAULT_EXPIRY_DAYS)
    if expires_at <= now:
        raise ValidationError({"expires_at": _("The expiry must be in the future.")})
    campaign = Campaign(
        survey=survey,
        name=name.strip(),
        audience_kind=audience_kind,
        audience_query=audience_query.strip().lstrip("?") if audience_kind == "filter" else "",
        audience_customer=audience_customer if audience_kind == "customer" else None,
        audience_bucket_id=audience_bucket_id if audience_kind == "bucket" else None,
        expires_at=expires_at,
        coupon_code=coupon_code.strip(),
        reminder_after_days=reminder_after_days,
        created_by=created_by,
    )
    campaign.full_clean()
    audience = selectors.campaign_audience(campaign=campaign)  # raises on a malformed filter
    if not audience.exists():
        raise ValidationError({"audience_kind": _("The audience is empty: nobody matches it.")})
    campaign.save()
    return campaign


@dataclass
class SendOutcome:
    invited: int
    already_invited: int
    skipped_opt_out: int
    skipped_no_email: int
    queued: int


def campaign_send(*, campaign: Campaign) -> SendOutcome:
    """Invite the campaign's audience and queue the emails.

    Set-based: one INSERT ... SELECT creates the invitations (ON CONFLICT DO NOTHING on
    (campaign, customer), so sending again never invites anyone twice); the emails go out in
    Celery tasks of SEND_BATCH_SIZE invitation ids dispatched after commit, and each email is
    claimed with UPDATE ... WHERE sent_at IS NULL, so no one is emailed twice. Customers who
    opted out or have no email are skipped and counted. Raises ValidationError when the
    campaign expired or nobody in the audience can be emailed.
    """
    from .tasks import invitations_send_task

    if campaign.is_expired:
        raise ValidationError({"expires_at": _("This campaign has expired.")})
    audience = selectors.campaign_audience(campaign=campaign)
    counts = selectors.audience_counts(audience)
    if counts["eligible"] == 0:
        raise ValidationError(
            {"audience_kind": _("Nobody in this audience can be emailed (no email or opted out).")}
        )
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        eligible_sql, params = (
            selectors.eligible(audience).order_by().values("id").query.sql_with_params()
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {Invitation._meta.db_table} (campaign_id, customer_id, created_at) "  # noqa: S608
                # "WHERE true" keeps SQLite from reading ON CONFLICT as a join condition.
                f"SELECT %s, sub.id, %s FROM ({eligible_sql}) sub WHERE true "
                "ON CONFLICT (campaign_id, customer_id) DO NOTHING",
                [locked.pk, timezone.now(), *params],
            )
            invited = cursor.rowcount
        pending = list(
            Invitation.objects.filter(campaign=locked, sent_at__isnull=True)
            .order_by("id")
            .values_list("id", flat=True)
        )
        locked.invited_count = Invitation.objects.filter(campaign=locked).count()
        locked.skipped_opt_out = counts["opt_out"]
        locked.skipped_no_email = counts["no_email"]
        locked.queued_at = timezone.now()
        locked.save(
            update_fields=["invited_count", "skipped_opt_out", "skipped_no_email", "queued_at"]
        )
        for start in range(0, len(pending), SEND_BATCH_SIZE):
            chunk = pending[start : start + SEND_BATCH_SIZE]
            transaction.on_commit(
                lambda chunk=chunk: invitations_send_task.delay(invitation_ids=chunk)
            )
    campaign.refresh_from_db()
    return SendOutcome(
        invited=invited,
        already_invited=counts["eligible"] - invited,
        skipped_opt_out=counts["opt_out"],
        skipped_no_email=counts["no_email"],
        queued=len(pending),
    )


def campaign_remind(*, campaign: Campaign, now: dt.datetime | None = None) -> int:
    """Queue the one reminder to non-responders whose first email is older than the
    campaign's reminder delay. Idempotent: each invitation is claimed once (reminded_at).
    Returns how many reminders were queued."""
    from .tasks import invitations_send_task

    due = list(selectors.reminders_due(campaign=campaign, now=now).values_list("id", flat=True))
    for start in range(0, len(due), SEND_BATCH_SIZE):
        chunk = due[start : start + SEND_BATCH_SIZE]
        transaction.on_commit(
            lambda chunk=chunk: invitations_send_task.delay(invitation_ids=chunk, reminder=True)
        )
    return len(due)


def reminders_send_due(*, now: dt.datetime | None = None) -> int:
    """Queue due reminders of every live campaign that has them switched on (periodic task)."""
    now = now or timezone.now()
    total = 0
    for campaign in Campaign.objects.filter(
        reminder_after_days__isnull=False, expires_at__gt=now, queued_at__isnull=False
    ):
        total += campaign_remind(campaign=campaign, now=now)
    return total


def _claim(invitation_id: int, *, reminder: bool) -> str | None:
    """Claim one invitation for sending with a conditional UPDATE and mint its link token.
    Returns the token, or None when it was already sent, expired or can no longer be emailed."""
    token, digest = tokens.token_pair()
    now = timezone.now()
    base = Invitation.objects.filter(
        pk=invitation_id,
        campaign__expires_at__gt=now,
        customer__email_opt_out=False,
    ).exclude(customer__email="")
    if reminder:
        claimed = (
            base.filter(sent_at__isnull=False, reminded_at__isnull=True)
            .exclude(Exists(Response.objects.filter(invitation=OuterRef("pk"))))
            .update(reminded_at=now, reminder_token_hash=digest)
        )
    else:
        claimed = base.filter(sent_at__isnull=True).update(sent_at=now, token_hash=digest)
    return token if claimed else None


def _unclaim(invitation_id: int, *, reminder: bool) -> None:
    if reminder:
        Invitation.objects.filter(pk=invitation_id).update(
            reminded_at=None, reminder_token_hash=None
        )
    else:
        Invitation.objects.filter(pk=invitation_id).update(sent_at=None, token_hash=None)


def invitations_send(*, invitation_ids: list[int], reminder: bool = False) -> int:
    """Email these invitations (or their reminders). Idempotent: every invitation is claimed
    atomically before its email goes out, so retries and duplicate tasks never email anyone
    twice; a failed email gives its claim back and the error is raised after the batch so that
    the task can retry. Returns the number of emails sent."""
    claimed: dict[int, str] = {}
    for invitation_id in invitation_ids:
        token = _claim(invitation_id, reminder=reminder)
        if token:
            claimed[invitation_id] = token
    if not claimed:
        return 0
    invitations = Invitation.objects.filter(pk__in=claimed).select_related(
        "customer__owner", "campaign__survey"
    )
    sent = 0
    failure: Exception | None = None
    with mail.get_connection() as conn:
        for invitation in invitations:
            message = _email(invitation, claimed[invitation.pk], reminder=reminder)
            try:
                conn.send_messages([message])
                sent += 1
            except Exception as exc:  # noqa: BLE001 - any transport error: give the claim back
                logger.warning("survey email %s failed: %s", invitation.pk, exc)
                _unclaim(invitation.pk, reminder=reminder)
                failure = exc
    if failure:
        raise failure
    return sent


def _email(invitation: Invitation, token: str, *, reminder: bool) -> mail.EmailMultiAlternatives:
    customer = invitation.customer
    campaign = invitation.campaign
    language = customer.preferred_language or settings.LANGUAGE_CODE
    with translation.override(language):
        context = {
            "customer": customer,
            "first_name": customer.first_name,
            "survey": campaign.survey,
            "campaign": campaign,
            "owner": customer.owner,
            "link": settings.SITE_URL + reverse("surveys:public_open", args=[token]),
            "reminder": reminder,
            "expires_on": timezone.localdate(campaign.expires_at),
        }
        subject = render_to_string("surveys/email/invitation_subject.txt", context).strip()
        text = render_to_string("surveys/email/invitation.txt", context)
        html = render_to_string("surveys/email/invitation.html", context)
    from_email = settings.DEFAULT_FROM_EMAIL
    reply_to = [customer.owner.email] if customer.owner and customer.owner.email else None
    message = mail.EmailMultiAlternatives(
        subject=subject, body=text, from_email=from_email, to=[customer.email], reply_to=reply_to
    )
    message.attach_alternative(html, "text/html")
    return message


# --- Responses -----------------------------------------------------------------------------


def invitation_mark_opened(*, invitation: Invitation) -> None:
    """Record the first opening (GET). Never spends the link."""
    if invitation.opened_at is None:
        Invitation.objects.filter(pk=invitation.pk, opened_at__isnull=True).update(
            opened_at=timezone.now()
        )


def _check_open(invitation: Invitation) -> None:
    if invitation.campaign.expires_at <= timezone.now():
        raise LinkExpired


def response_draft_save(*, invitation: Invitation, values: dict[int, object]) -> None:
    """Keep a partial set of already validated answers so the customer can resume.
    Raises LinkExpired or AlreadyAnswered."""
    _check_open(invitation)
    if Response.objects.filter(invitation=invitation).exists():
        raise AlreadyAnswered
    ResponseDraft.objects.update_or_create(
        invitation=invitation,
        defaults={"data": {str(k): v for k, v in values.items()}, "updated_at": timezone.now()},
    )


def response_submit(
    *, invitation: Invitation, questions: list[Question], values: dict[int, object], language: str
) -> Response:
    """Store the finished response with its answers, spending the link.

    Atomic: on PostgreSQL the usual response (happy, no draft) is a single INSERT statement
    that writes the response and all its answers; otherwise one transaction. One finished
    response per invitation is enforced by the database: the losing insert of two concurrent
    submits gets IntegrityError, raised here as AlreadyAnswered.
    An NPS answer 0-6 or CSAT answer 1-2 opens a follow-up for the account owner (or the
    unassigned queue), due in two working days. When the customer's previous response was
    unhappy, `recovered` says whether this one is not. Raises LinkExpired, AlreadyAnswered.
    `values` must come from answers.answers_parse(require_all=True).
    """
    _check_open(invitation)
    by_id = {q.id: q for q in questions}
    unhappy_answers = [
        (by_id[qid], value)
        for qid, value in values.items()
        if scores.is_unhappy(by_id[qid].kind, value if isinstance(value, int) else None)
    ]
    customer = invitation.customer
    response = Response(
        invitation_id=invitation.pk,
        campaign_id=invitation.campaign_id,
        survey_id=invitation.campaign.survey_id,
        customer_id=customer.pk,
        finished_at=timezone.now(),
        language=language[:8],
        unhappy=bool(unhappy_answers),
    )
    answers = [_answer(response, by_id[qid], value) for qid, value in values.items()]
    has_draft = getattr(invitation, "has_draft", True)
    # The usual response (happy, no draft, not inside a caller's transaction) is one statement
    # on PostgreSQL, atomic on its own: no BEGIN and COMMIT round trips.
    alone = connection.vendor == "postgresql" and not (
        unhappy_answers or has_draft or connection.in_atomic_block
    )
    try:
        # No check before the insert: the unique constraint decides between two submits.
        with contextlib.nullcontext() if alone else transaction.atomic():
            if connection.vendor == "postgresql":
                _response_insert_pg(response, answers)
            else:
                _response_insert_orm(response, answers)
            if has_draft:
                ResponseDraft.objects.filter(invitation_id=invitation.pk).delete()
            if unhappy_answers:
                _follow_up_open(
                    response=response,
                    customer=customer,
                    unhappy=unhappy_answers,
                    values=values,
                    questions=questions,
                )
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
        if constraint == "response_one_per_invitation" or (
            constraint is None and "invitation" in str(exc)
        ):
            raise AlreadyAnswered from None
        raise
    return response


def _previous_unhappy(customer_id: int) -> Subquery:
    """The customer's latest earlier response's `unhappy`, as a subquery for the INSERT."""
    return Subquery(
        Response.objects.filter(customer_id=customer_id)
        .order_by("-finished_at", "-id")
        .values("unhappy")[:1],
        output_field=BooleanField(),
    )


def _response_insert_orm(response: Response, answers: list[Answer]) -> None:
    """Portable: INSERT the response ("recovered" read by the INSERT itself), then its
    answers in one bulk INSERT. Runs inside the caller's transaction."""
    response.recovered = Case(
        When(_previous_unhappy(response.customer_id), then=Value(not response.unhappy)),
        default=Value(None),
        output_field=BooleanField(null=True),
    )
    response.save(force_insert=True)
    del response.__dict__["recovered"]  # the stored value is read back only if asked for
    for answer in answers:
        answer.response_id = response.pk
    Answer.objects.bulk_create(answers)


@functools.cache
def _response_insert_sql() -> str:
    qn = connection.ops.quote_name
    response_table, answer_table = qn(Response._meta.db_table), qn(Answer._meta.db_table)
    return (
        f"WITH r AS (INSERT INTO {response_table} "  # noqa: S608 - identifiers from metadata
        "(invitation_id, campaign_id, survey_id, customer_id, finished_at, language, unhappy,"
        " recovered) VALUES (%s, %s, %s, %s, %s, %s, %s, CASE WHEN ("
        f"SELECT p.unhappy FROM {response_table} p WHERE p.customer_id = %s"
        " ORDER BY p.finished_at DESC, p.id DESC LIMIT 1) THEN %s END) RETURNING id), "
        f"a AS (INSERT INTO {answer_table} "
        "(response_id, question_id, kind, value_int, value_text, value_choices) "
        "SELECT r.id, x.question_id, x.kind, x.value_int, x.value_text, x.value_choices "
        "FROM r, jsonb_to_recordset(%s::jsonb) AS x(question_id bigint, kind varchar,"
        " value_int smallint, value_text text, value_choices jsonb)) "
        "SELECT id FROM r"
    )


def _response_insert_pg(response: Response, answers: list[Answer]) -> None:
    """The response and all its answers in ONE statement (a data-modifying CTE), so it is
    atomic even outside a transaction; the same columns and constraints as the ORM path."""
    rows = json.dumps(
        [
            {
                "question_id": a.question_id,
                "kind": a.kind,
                "value_int": a.value_int,
                "value_text": a.value_text,
                "value_choices": a.value_choices,
            }
            for a in answers
        ]
    )
    r = response
    with connection.cursor() as cursor:
        cursor.execute(
            _response_insert_sql(),
            [
                *(r.invitation_id, r.campaign_id, r.survey_id, r.customer_id, r.finished_at),
                *(r.language, r.unhappy, r.customer_id, not r.unhappy, rows),
            ],
        )
        response.pk = cursor.fetchone()[0]
    response._state.adding = False
    response._state.db = connection.alias
    del response.__dict__["recovered"]  # the stored value is read back only if asked for


def _answer(response: Response, question: Question, value) -> Answer:
    answer = Answer(response=response, question=question, kind=question.kind)
    if question.kind == QuestionKind.MULTIPLE:
        answer.value_choices = list(value)
    elif question.kind in (QuestionKind.TEXT, QuestionKind.SINGLE):
        answer.value_text = str(value)
    else:
        answer.value_int = int(value)
    return answer


def _follow_up_open(*, response, customer, unhappy, values, questions) -> FollowUp:
    parts = [f"{question.get_kind_display().split(' ')[0]} {value}" for question, value in unhappy]
    comment = next(
        (str(values[q.id]) for q in questions if q.kind == QuestionKind.TEXT and values.get(q.id)),
        "",
    )
    reason = _("Unhappy survey answer: %(answers)s") % {"answers": ", ".join(parts)}
    if comment:
        reason = f"{reason}. “{comment}”"
    if len(reason) > 255:
        reason = reason[:254] + "…"
    return FollowUp.objects.create(
        customer_id=customer.pk,
        assigned_to_id=customer.owner_id,
        source=FollowUpSource.SURVEY,
        source_ref=str(response.pk),
        reason=reason,
        due_on=add_working_days(timezone.localdate(), FOLLOW_UP_WORKING_DAYS),
    )
