"""Reads for surveys: audiences, results and scores in SQL, verbatims, customer history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db.models import (
    Avg,
    Count,
    Exists,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce, TruncWeek
from django.http import QueryDict
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.models import Customer, CustomerStatus

from . import scores, tokens
from .models import (
    Answer,
    AudienceKind,
    Campaign,
    Invitation,
    Question,
    Response,
    ResponseDraft,
    Survey,
)

# --- Audiences -----------------------------------------------------------------------------


def customers_from_query(query: str) -> QuerySet[Customer]:
    """The customer list's filter applied to a query string (the /customers/ URL's query).

    Uses crm.filters.CustomerFilter when the customer list provides one; otherwise the basic
    filters q (search), status, owner (a staff id or "none") and city. Raises ValidationError
    naming the bad parameter.
    """
    data = QueryDict(query or "")
    try:
        from crm.filters import CustomerFilter  # the customer list's own filter, if present
    except ImportError:
        CustomerFilter = None
    if CustomerFilter is not None:
        filterset = CustomerFilter(data, queryset=Customer.objects.all())
        if not filterset.is_valid():
            raise ValidationError(
                {
                    "audience_query": "; ".join(
                        f"{k}: {' '.join(v)}" for k, v in filterset.errors.items()
                    )
                }
            )
        return filterset.qs
    qs = Customer.objects.all()
    if data.get("q"):
        qs = qs.search(data["q"])
    status = data.get("status")
    if status:
        if status not in CustomerStatus.values:
            raise ValidationError({"audience_query": _("status: unknown value %s.") % status})
        qs = qs.filter(status=status)
    owner = data.get("owner")
    if owner:
        if owner == "none":
            qs = qs.filter(owner__isnull=True)
        elif owner.isdigit():
            qs = qs.filter(owner_id=int(owner))
        else:
            raise ValidationError({"audience_query": _("owner: give a staff id or none.")})
    if data.get("city"):
        qs = qs.filter(city__iexact=data["city"])
    return qs


def campaign_audience(*, campaign: Campaign) -> QuerySet[Customer]:
    """Everyone the campaign targets, before skipping opted-out or email-less customers."""
    if campaign.audience_kind == AudienceKind.CUSTOMER:
        if not campaign.audience_customer_id:
            raise ValidationError({"audience_customer": _("Choose the customer.")})
        return Customer.objects.filter(pk=campaign.audience_customer_id)
    if campaign.audience_kind == AudienceKind.BUCKET:
        if not campaign.audience_bucket_id:
            raise ValidationError({"audience_bucket_id": _("Choose the bucket.")})
        return Customer.objects.filter(current_membership__bucket_id=campaign.audience_bucket_id)
    return customers_from_query(campaign.audience_query)


def eligible(audience: QuerySet[Customer]) -> QuerySet[Customer]:
    return audience.filter(email_opt_out=False).exclude(email="")


def audience_counts(audience: QuerySet[Customer]) -> dict[str, int]:
    """One aggregate query: total, eligible, opted out, and no email (not opted out)."""
    return audience.order_by().aggregate(
        total=Count("id"),
        eligible=Count("id", filter=Q(email_opt_out=False) & ~Q(email="")),
        opt_out=Count("id", filter=Q(email_opt_out=True)),
        no_email=Count("id", filter=Q(email_opt_out=False, email="")),
    )


def buckets() -> list[tuple[int, str]]:
    """Buckets a campaign can target (segments' current membership)."""
    from segments.models import Bucket

    return list(Bucket.objects.filter(active=True).order_by("priority").values_list("id", "name"))


def reminders_due(*, campaign: Campaign, now: dt.datetime | None = None) -> QuerySet[Invitation]:
    now = now or timezone.now()
    if campaign.reminder_after_days is None or campaign.expires_at <= now:
        return Invitation.objects.none()
    cutoff = now - dt.timedelta(days=campaign.reminder_after_days)
    return (
        Invitation.objects.filter(
            campaign=campaign,
            sent_at__lte=cutoff,
            reminded_at__isnull=True,
            customer__email_opt_out=False,
        )
        .exclude(Exists(Response.objects.filter(invitation=OuterRef("pk"))))
        .order_by("id")
    )


# --- Public links --------------------------------------------------------------------------


def invitation_for_token(token: str) -> Invitation | None:
    """The invitation a link token belongs to (first email or reminder), or None."""
    if not tokens.token_is_well_formed(token):
        return None
    return invitation_for_hash(tokens.token_hash(token))


def invitation_for_hash(digest: str) -> Invitation | None:
    """The invitation with campaign, survey and customer joined; `answered` and `has_draft`
    annotated."""
    if not digest:
        return None
    return (
        Invitation.objects.select_related("campaign__survey", "customer")
        # Only what the public pages and response_submit use: the customer table is wide and
        # this lookup runs on every survey request.
        .only(
            "id",
            "campaign_id",
            "customer_id",
            "opened_at",
            "sent_at",
            "campaign__id",
            "campaign__survey_id",
            "campaign__expires_at",
            "campaign__coupon_code",
            "campaign__survey__id",
            "campaign__survey__title_en",
            "campaign__survey__title_ko",
            "campaign__survey__intro_en",
            "campaign__survey__intro_ko",
            "customer__id",
            "customer__first_name",
            "customer__preferred_language",
            "customer__owner_id",
        )
        .filter(Q(token_hash=digest) | Q(reminder_token_hash=digest))
        .annotate(
            answered=Exists(Response.objects.filter(invitation=OuterRef("pk"))),
            has_draft=Exists(ResponseDraft.objects.filter(invitation=OuterRef("pk"))),
        )
        .first()
    )


def survey_questions(survey: Survey) -> list[Question]:
    return list(survey.questions.order_by("order", "id"))


def invitation_answered(invitation: Invitation) -> bool:
    return Response.objects.filter(invitation=invitation).exists()


# --- Results -------------------------------------------------------------------------------


@dataclass
class ScoreSummary:
    responses: int
    nps: int | None
    nps_answers: int
    promoters: int
    passives: int
    detractors: int
    csat: int | None
    csat_answers: int
    ces: int | None
    ces_answers: int
    ces_mean: float | None


def _score_aggregates(prefix: str = "") -> dict:
    """Count(filter=...) aggregates of the three scores over Answer rows reached by `prefix`."""
    p = prefix
    return {
        "nps_n": Count(f"{p}id", filter=Q(**{f"{p}kind": "nps"})),
        "promoters": Count(f"{p}id", filter=Q(**{f"{p}kind": "nps", f"{p}value_int__gte": 9})),
        "detractors": Count(f"{p}id", filter=Q(**{f"{p}kind": "nps", f"{p}value_int__lte": 6})),
        "csat_n": Count(f"{p}id", filter=Q(**{f"{p}kind": "csat"})),
        "csat_ok": Count(f"{p}id", filter=Q(**{f"{p}kind": "csat", f"{p}value_int__gte": 4})),
        "ces_n": Count(f"{p}id", filter=Q(**{f"{p}kind": "ces"})),
        "ces_ok": Count(f"{p}id", filter=Q(**{f"{p}kind": "ces", f"{p}value_int__gte": 5})),
        "ces_mean": Avg(f"{p}value_int", filter=Q(**{f"{p}kind": "ces"})),
    }


def _summary(row: dict, responses: int) -> ScoreSummary:
    return ScoreSummary(
        responses=responses,
        nps=scores.nps_from_totals(
            promoters=row["promoters"], detractors=row["detractors"], total=row["nps_n"]
        ),
        nps_answers=row["nps_n"],
        promoters=row["promoters"],
        passives=row["nps_n"] - row["promoters"] - row["detractors"],
        detractors=row["detractors"],
        csat=scores.share_pct(row["csat_ok"], row["csat_n"]),
        csat_answers=row["csat_n"],
        ces=scores.share_pct(row["ces_ok"], row["ces_n"]),
        ces_answers=row["ces_n"],
        ces_mean=round(float(row["ces_mean"]), 2) if row["ces_mean"] is not None else None,
    )


def survey_scores(
    *, survey: Survey, campaign: Campaign | None = None, since: dt.datetime | None = None
) -> ScoreSummary:
    """NPS, CSAT and CES of a survey (optionally one campaign / since a date), in SQL."""
    answers = Answer.objects.filter(response__survey=survey)
    responses = Response.objects.filter(survey=survey)
    if campaign is not None:
        answers = answers.filter(response__campaign=campaign)
        responses = responses.filter(campaign=campaign)
    if since is not None:
        answers = answers.filter(response__finished_at__gte=since)
        responses = responses.filter(finished_at__gte=since)
    row = answers.aggregate(**_score_aggregates())
    return _summary(row, responses.count())


def campaign_stats(*, survey: Survey) -> QuerySet[Campaign]:
    """The survey's campaigns with sent, opened, answered counts (subqueries, no N+1)."""

    def _count(qs):
        return Coalesce(
            Subquery(
                qs.order_by().values("campaign_id").annotate(n=Count("id")).values("n"),
                output_field=IntegerField(),
            ),
            0,
        )

    inv = Invitation.objects.filter(campaign=OuterRef("pk"))
    return (
        Campaign.objects.filter(survey=survey)
        .annotate(
            sent=_count(inv.filter(sent_at__isnull=False)),
            opened=_count(inv.filter(opened_at__isnull=False)),
            answered=_count(Response.objects.filter(campaign=OuterRef("pk"))),
        )
        .order_by("-created_at", "-id")
    )


def response_rate(answered: int, sent: int) -> int | None:
    return scores.share_pct(answered, sent)


def weekly_trend(*, survey: Survey, weeks: int = 26) -> list[dict]:
    """Per ISO week: responses, NPS and CSAT, computed in one grouped query."""
    since = timezone.now() - dt.timedelta(weeks=weeks)
    rows = (
        Answer.objects.filter(response__survey=survey, response__finished_at__gte=since)
        .annotate(week=TruncWeek("response__finished_at"))
        .values("week")
        .annotate(responses=Count("response_id", distinct=True), **_score_aggregates())
        .order_by("week")
    )
    out = []
    for row in rows:
        summary = _summary(row, row["responses"])
        out.append(
            {
                "week": row["week"].date().isoformat(),
                "responses": row["responses"],
                "nps": summary.nps,
                "csat": summary.csat,
                "ces": summary.ces,
            }
        )
    return out


def verbatims(
    *,
    survey: Survey,
    campaign_id: int | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    contains: str = "",
    unhappy_only: bool = False,
) -> QuerySet[Answer]:
    """Free-text answers of a survey, newest first, with the response and customer joined."""
    qs = (
        Answer.objects.filter(response__survey=survey, kind="text")
        .exclude(value_text="")
        .select_related("response__customer", "response__campaign", "question")
    )
    if campaign_id:
        qs = qs.filter(response__campaign_id=campaign_id)
    if since:
        qs = qs.filter(response__finished_at__date__gte=since)
    if until:
        qs = qs.filter(response__finished_at__date__lte=until)
    if contains:
        qs = qs.filter(value_text__icontains=contains)
    if unhappy_only:
        qs = qs.filter(response__unhappy=True)
    return qs.order_by("-response__finished_at", "-id")


def survey_list() -> QuerySet[Survey]:
    """Surveys with their question, campaign and response counts (subqueries, no N+1)."""

    def _count(model, field="survey_id"):
        return Coalesce(
            Subquery(
                model.objects.filter(**{field: OuterRef("pk")})
                .order_by()
                .values(field)
                .annotate(n=Count("id"))
                .values("n"),
                output_field=IntegerField(),
            ),
            0,
        )

    return Survey.objects.annotate(
        question_count=_count(Question),
        campaign_count=_count(Campaign),
        response_count=_count(Response),
    ).order_by("-created_at", "-id")


def customer_survey_history(customer: Customer) -> QuerySet[Response]:
    """A customer's finished responses, newest first, each with its NPS, CSAT and CES answer
    (None where not asked or skipped), `unhappy` and `recovered`. One query."""
    return (
        Response.objects.filter(customer=customer)
        .select_related("survey", "campaign")
        .annotate(
            nps=Max("answers__value_int", filter=Q(answers__kind="nps")),
            csat=Max("answers__value_int", filter=Q(answers__kind="csat")),
            ces=Max("answers__value_int", filter=Q(answers__kind="ces")),
        )
        .order_by("-finished_at", "-id")
    )


def nps_by_bucket(*, survey: Survey | None = None, since: dt.datetime | None = None) -> list[dict]:
    """NPS, CSAT and CES per current bucket (segments' CurrentMembership; None = Unsegmented),
    optionally for one survey and since a moment. One grouped query. Each row: bucket_id,
    bucket_name, responses, nps, nps_answers, csat, ces."""
    answers = Answer.objects.all()
    if survey is not None:
        answers = answers.filter(response__survey=survey)
    if since is not None:
        answers = answers.filter(response__finished_at__gte=since)
    bucket_path = "response__customer__current_membership__bucket"
    rows = (
        answers.values(f"{bucket_path}_id", f"{bucket_path}__name")
        .annotate(responses=Count("response_id", distinct=True), **_score_aggregates())
        .order_by(f"{bucket_path}__priority")
    )
    out = []
    for row in rows:
        summary = _summary(row, row["responses"])
        out.append(
            {
                "bucket_id": row[f"{bucket_path}_id"],
                "bucket_name": row[f"{bucket_path}__name"] or _("Unsegmented"),
                "responses": row["responses"],
                "nps": summary.nps,
                "nps_answers": summary.nps_answers,
                "csat": summary.csat,
                "ces": summary.ces,
            }
        )
    return out
