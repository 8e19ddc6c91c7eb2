"""Writes for churn interviews and their reason codes. Keyword-only, validated, atomic."""

from collections.abc import Iterable
from datetime import date

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from crm.models import Customer, CustomerStatus, FollowUp, FollowUpSource, FollowUpStatus, User

from .models import ChurnInterview, ChurnSecondaryReason, ReasonCode, WinbackOutcome

# The interview's own fields that an edit may change (the edit form is initialised from them).
UPDATABLE_FIELDS = (
    "interviewer",
    "interviewed_on",
    "channel",
    "competitor",
    "verbatim",
    "liked",
    "bring_back",
    "likelihood_to_return",
    "winback_offer",
    "winback_outcome",
    "follow_up_on",
)


# Reason codes -------------------------------------------------------------------------------


def reason_code_create(
    *, code: str, category: str, label_en: str, label_ko: str = "", is_active: bool = True
) -> ReasonCode:
    """Create a reason code. Raises ValidationError (nothing saved) on a duplicate code, an
    unknown category or a missing English label."""
    reason = ReasonCode(
        code=code,
        category=category,
        label_en=label_en.strip(),
        label_ko=label_ko.strip(),
        is_active=is_active,
    )
    reason.full_clean()
    reason.save()
    return reason


@transaction.atomic
def reason_code_update(
    *, reason: ReasonCode, category: str, label_en: str, label_ko: str, is_active: bool
) -> ReasonCode:
    """Reword, recategorise or (de)activate a reason code. The `code` never changes.

    Rewording is safe: interviews keep the wording they were recorded with. The category is
    the stable part of a code, so it cannot change once an interview uses the code (raises
    ValidationError naming "category"; nothing saved).
    """
    reason = ReasonCode.objects.select_for_update().get(pk=reason.pk)
    if category != reason.category and reason_code_is_used(reason=reason):
        raise ValidationError(
            {
                "category": _(
                    "This reason code is already used by interviews, so its category cannot "
                    "change. Create a new code instead."
                )
            }
        )
    reason.category = category
    reason.label_en = label_en.strip()
    reason.label_ko = label_ko.strip()
    reason.is_active = is_active
    reason.full_clean()
    reason.save(update_fields=["category", "label_en", "label_ko", "is_active", "updated_at"])
    return reason


def reason_code_is_used(*, reason: ReasonCode) -> bool:
    return (
        ChurnInterview.objects.filter(primary_reason=reason).exists()
        or ChurnSecondaryReason.objects.filter(reason=reason).exists()
    )


# Interviews ---------------------------------------------------------------------------------


def _validate_interview(interview: ChurnInterview, secondary: list[ReasonCode]) -> None:
    errors: dict[str, list[str]] = {}
    if interview.winback_offer.strip() and interview.winback_outcome == WinbackOutcome.NO_OFFER:
        errors.setdefault("winback_outcome", []).append(
            _("An offer was made: say whether it was accepted, declined or is pending.")
        )
    if not interview.winback_offer.strip() and interview.winback_outcome != WinbackOutcome.NO_OFFER:
        errors.setdefault("winback_offer", []).append(
            _("Describe the offer, or set the outcome to “No offer made”.")
        )
    if any(r.pk == interview.primary_reason_id for r in secondary):
        errors.setdefault("secondary_reasons", []).append(
            _("The primary reason cannot also be a secondary reason.")
        )
    if errors:
        raise ValidationError(errors)
    # created_by may be empty (recorded_by=None, or the recorder's account deleted since).
    interview.full_clean(exclude=["created_by"])


def _fresh(primary: ReasonCode, secondary: Iterable[ReasonCode]):
    """Re-read the reason codes, so that the wording copied and the active flag checked are the
    database's current ones, not those of a possibly stale instance."""
    secondary_ids = list(dict.fromkeys(r.pk for r in secondary))
    rows = ReasonCode.objects.in_bulk([primary.pk, *secondary_ids])
    if primary.pk not in rows:
        raise ValidationError({"primary_reason": _("This reason code no longer exists.")})
    if any(pk not in rows for pk in secondary_ids):
        raise ValidationError({"secondary_reasons": _("A reason code no longer exists.")})
    return rows[primary.pk], [rows[pk] for pk in secondary_ids]


def _snapshot_primary(interview: ChurnInterview, reason: ReasonCode) -> None:
    interview.primary_reason = reason
    interview.primary_reason_label_en = reason.label_en
    interview.primary_reason_label_ko = reason.label_ko


def _inactive_error(field: str, reason: ReasonCode) -> ValidationError:
    return ValidationError(
        {field: _("The reason “%(label)s” is deactivated.") % {"label": reason.label_en}}
    )


def _sync_follow_up(*, interview: ChurnInterview, previous_date: date | None = None) -> None:
    """Create the interviewer's follow-up for the follow-up date, or move the open one when the
    date changed (an unchanged date leaves the follow-up, perhaps reassigned since, alone)."""
    if interview.follow_up_on is None:
        return
    follow_up = interview.follow_up
    if follow_up is not None and interview.follow_up_on == previous_date:
        return
    if follow_up is not None and follow_up.status == FollowUpStatus.OPEN:
        follow_up.due_on = interview.follow_up_on
        follow_up.assigned_to = interview.interviewer
        follow_up.save(update_fields=["due_on", "assigned_to"])
        return
    if follow_up is not None and follow_up.due_on == interview.follow_up_on:
        return  # already done for this date
    interview.follow_up = FollowUp.objects.create(
        customer_id=interview.customer_id,
        assigned_to=interview.interviewer,
        source=FollowUpSource.MANUAL,
        source_ref=f"churn-interview:{interview.pk}",
        reason=_("Churn interview follow-up"),
        due_on=interview.follow_up_on,
    )
    interview.save(update_fields=["follow_up"])


@transaction.atomic
def churn_interview_record(
    *,
    customer: Customer,
    interviewer: User,
    recorded_by: User | None,
    interviewed_on: date,
    channel: str,
    primary_reason: ReasonCode,
    secondary_reasons: Iterable[ReasonCode] = (),
    competitor: str = "",
    verbatim: str = "",
    liked: str = "",
    bring_back: str = "",
    likelihood_to_return: int | None = None,
    winback_offer: str = "",
    winback_outcome: str = WinbackOutcome.NO_OFFER,
    follow_up_on: date | None = None,
) -> ChurnInterview:
    """Record the churn interview of a customer who left, copying the current wording of its
    reason codes, and create an open follow-up for the interviewer when a follow-up date is
    given.

    Atomic: either the interview, its secondary reasons and the follow-up are all saved, or
    nothing is. Raises ValidationError (keyed by field) when the customer has not churned or
    been cancelled, a reason code is deactivated, a value is out of range, the win-back offer
    and outcome disagree, or the customer already has an interview (decided by the database's
    unique constraint, so two simultaneous submissions cannot both succeed).
    """
    if customer.status != CustomerStatus.CHURNED and customer.cancelled_at is None:
        raise ValidationError(
            _("%(customer)s has neither churned nor been cancelled.") % {"customer": customer}
        )
    primary_reason, secondary = _fresh(primary_reason, secondary_reasons)
    for field, reasons in (("primary_reason", [primary_reason]), ("secondary_reasons", secondary)):
        for reason in reasons:
            if not reason.is_active:
                raise _inactive_error(field, reason)
    interview = ChurnInterview(
        customer=customer,
        interviewer=interviewer,
        created_by=recorded_by,
        interviewed_on=interviewed_on,
        channel=channel,
        competitor=competitor.strip(),
        verbatim=verbatim.strip(),
        liked=liked.strip(),
        bring_back=bring_back.strip(),
        likelihood_to_return=likelihood_to_return,
        winback_offer=winback_offer.strip(),
        winback_outcome=winback_outcome,
        follow_up_on=follow_up_on,
    )
    _snapshot_primary(interview, primary_reason)
    _validate_interview(interview, secondary)
    try:
        with transaction.atomic():
            interview.save()
    except IntegrityError as exc:
        if "churninterview_one_per_customer" in str(exc):
            raise ValidationError(
                _("%(customer)s already has a churn interview.") % {"customer": customer}
            ) from exc
        raise
    ChurnSecondaryReason.objects.bulk_create(
        ChurnSecondaryReason(
            interview=interview, reason=r, label_en=r.label_en, label_ko=r.label_ko
        )
        for r in secondary
    )
    _sync_follow_up(interview=interview)
    return interview


@transaction.atomic
def churn_interview_update(
    *,
    interview: ChurnInterview,
    interviewer: User,
    interviewed_on: date,
    channel: str,
    primary_reason: ReasonCode,
    secondary_reasons: Iterable[ReasonCode] = (),
    competitor: str = "",
    verbatim: str = "",
    liked: str = "",
    bring_back: str = "",
    likelihood_to_return: int | None = None,
    winback_offer: str = "",
    winback_outcome: str = WinbackOutcome.NO_OFFER,
    follow_up_on: date | None = None,
) -> ChurnInterview:
    """Edit an interview. Reasons that stay keep the wording they were recorded with; a newly
    chosen reason takes its current wording and must be active. A new or moved follow-up date
    creates or moves the interviewer's open follow-up (a cleared date leaves an existing
    follow-up alone, since someone may be working on it).

    Atomic; raises ValidationError keyed by field, and then nothing is saved.
    """
    interview = (
        ChurnInterview.objects.select_for_update(of=("self",))
        .select_related("follow_up")
        .get(pk=interview.pk)
    )
    primary_reason, secondary = _fresh(primary_reason, secondary_reasons)
    if primary_reason.pk != interview.primary_reason_id:
        if not primary_reason.is_active:
            raise _inactive_error("primary_reason", primary_reason)
        _snapshot_primary(interview, primary_reason)
    kept = {link.reason_id: link for link in interview.secondary_reason_links.all()}
    for reason in secondary:
        if reason.pk not in kept and not reason.is_active:
            raise _inactive_error("secondary_reasons", reason)
    values = {
        "interviewer": interviewer,
        "interviewed_on": interviewed_on,
        "channel": channel,
        "competitor": competitor.strip(),
        "verbatim": verbatim.strip(),
        "liked": liked.strip(),
        "bring_back": bring_back.strip(),
        "likelihood_to_return": likelihood_to_return,
        "winback_offer": winback_offer.strip(),
        "winback_outcome": winback_outcome,
        "follow_up_on": follow_up_on,
    }
    previous_date = interview.follow_up_on
    for name in UPDATABLE_FIELDS:
        setattr(interview, name, values[name])
    _validate_interview(interview, secondary)
    interview.save()
    wanted = {r.pk for r in secondary}
    ChurnSecondaryReason.objects.filter(interview=interview).exclude(reason_id__in=wanted).delete()
    ChurnSecondaryReason.objects.bulk_create(
        ChurnSecondaryReason(
            interview=interview, reason=r, label_en=r.label_en, label_ko=r.label_ko
        )
        for r in secondary
        if r.pk not in kept
    )
    _sync_follow_up(interview=interview, previous_date=previous_date)
    return interview
