"""Writes for the crm screens: keyword-only, validated, atomic. No HTTP here.

Every service raises django.core.exceptions.ValidationError (with a message naming the field)
on bad input and then writes nothing.
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import (
    Case,
    DecimalField,
    F,
    IntegerField,
    OuterRef,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Greatest, Least, Log, Round
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import (
    Customer,
    CustomerStatus,
    FollowUp,
    FollowUpSource,
    FollowUpStatus,
    Interaction,
    OwnerChange,
    RatingChange,
    RatingKind,
    SocialProfile,
    User,
)
from .scores import INFLUENCE_MAX, INFLUENCE_MIN
from .selectors import staff_list


def _lock(customer: Customer) -> Customer:
    return Customer.objects.select_for_update().get(pk=customer.pk)


def _check_staff(user: User | None, field: str) -> None:
    if user is not None and not staff_list().filter(pk=user.pk).exists():
        raise ValidationError(
            {field: _("%(user)s is not an active staff member.") % {"user": user}}
        )


@transaction.atomic
def effort_rate(*, customer: Customer, effort: int, by: User, reason: str = "") -> Customer:
    """Set the customer's service effort (1-10), record who and when, and keep the history
    (one RatingChange row). Atomic. Raises ValidationError when effort is outside 1-10.
    """
    if not isinstance(effort, int) or not 1 <= effort <= 10:
        raise ValidationError({"effort": _("Service effort must be a whole number from 1 to 10.")})
    locked = _lock(customer)
    old = locked.service_effort
    now = timezone.now()
    Customer.objects.filter(pk=locked.pk).update(
        service_effort=effort, effort_rated_by=by, effort_rated_at=now, updated_at=now
    )
    RatingChange.objects.create(
        customer=locked,
        kind=RatingKind.EFFORT,
        old_value=old,
        new_value=effort,
        reason=reason[:255],
        changed_by=by,
        changed_at=now,
    )
    customer.service_effort, customer.effort_rated_by, customer.effort_rated_at = effort, by, now
    return customer


@transaction.atomic
def influence_override_set(
    *, customer: Customer, value: int | None, reason: str, by: User
) -> Customer:
    """Set (0-10, with a reason) or clear (value None) the manager's influence override; the
    effective influence follows. History kept as a RatingChange row. Atomic.
    Raises ValidationError for a value outside 0-10 or a missing reason when setting.
    """
    reason = (reason or "").strip()
    if value is not None:
        if not isinstance(value, int) or not INFLUENCE_MIN <= value <= INFLUENCE_MAX:
            raise ValidationError({"value": _("Influence must be a whole number from 0 to 10.")})
        if not reason:
            raise ValidationError({"reason": _("Give a reason for overriding the influence.")})
    locked = _lock(customer)
    old = locked.influence_override
    effective = locked.influence_computed if value is None else value
    Customer.objects.filter(pk=locked.pk).update(
        influence_override=value,
        influence_override_reason=reason[:255] if value is not None else "",
        influence=effective,
        updated_at=timezone.now(),
    )
    RatingChange.objects.create(
        customer=locked,
        kind=RatingKind.INFLUENCE,
        old_value=old,
        new_value=value,
        reason=reason[:255],
        changed_by=by,
    )
    customer.influence_override = value
    customer.influence_override_reason = reason if value is not None else ""
    customer.influence = effective
    return customer


def influence_recompute(*, customer_ids: Iterable[int] | None = None) -> int:
    """Recompute influence_computed = clamp(round(2 x log10(1 + total followers)), 0, 10) and
    the effective influence for the given customers (all when None) in one UPDATE.
    Idempotent. Returns the number of customers updated.
    """
    followers = (
        SocialProfile.objects.filter(customer=OuterRef("pk"))
        .order_by()
        .values("customer")
        .annotate(total=Sum("followers"))
        .values("total")
    )
    total = Coalesce(Subquery(followers, output_field=IntegerField()), Value(0))
    num = DecimalField(max_digits=30, decimal_places=10)
    score = Cast(
        Least(
            Greatest(
                Round(
                    Value(Decimal(2), output_field=num)
                    * Log(Value(Decimal(10), output_field=num), Cast(total, num) + Value(1)),
                ),
                Value(Decimal(INFLUENCE_MIN), output_field=num),
            ),
            Value(Decimal(INFLUENCE_MAX), output_field=num),
        ),
        IntegerField(),
    )
    qs = Customer.objects.all()
    if customer_ids is not None:
        qs = qs.filter(pk__in=list(customer_ids))
    return qs.update(
        influence_computed=score,
        influence=Case(
            When(influence_override__isnull=False, then=F("influence_override")),
            default=score,
        ),
        updated_at=timezone.now(),  # the nightly job's incremental scope reads it
    )


@transaction.atomic
def social_profile_save(
    *,
    customer: Customer,
    network: str,
    handle: str,
    followers: int,
    profile: SocialProfile | None = None,
) -> SocialProfile:
    """Add (profile None) or edit a social profile of `customer`, then recompute its influence.
    Atomic. Raises ValidationError for an unknown network, empty handle, negative followers,
    a duplicate (customer, network, handle), or a profile of another customer.
    """
    if profile is None:
        profile = SocialProfile(customer=customer)
    elif profile.customer_id != customer.pk:
        raise ValidationError(_("This social profile belongs to another customer."))
    profile.network = network
    profile.handle = (handle or "").strip().lstrip("@")
    profile.followers = followers
    profile.full_clean()
    profile.save()
    influence_recompute(customer_ids=[customer.pk])
    return profile


@transaction.atomic
def social_profile_delete(*, profile: SocialProfile) -> None:
    """Remove a social profile and recompute its customer's influence. Atomic."""
    customer_id = profile.customer_id
    profile.delete()
    influence_recompute(customer_ids=[customer_id])


@transaction.atomic
def interaction_log(
    *,
    customer: Customer,
    staff: User,
    channel: str,
    minutes: int,
    direction: str = "inbound",
    summary: str = "",
    outcome: str = "resolved",
    follow_up_on: date | None = None,
    occurred_at: datetime | None = None,
) -> Interaction:
    """Record one service interaction; with a follow-up date, also open a FollowUp for the
    customer's owner (or `staff` when the customer has none). Atomic: both or neither.
    Raises ValidationError for minutes outside 1-1440, unknown channel/direction/outcome, or a
    follow-up date in the past.
    """
    if follow_up_on is not None and follow_up_on < timezone.localdate():
        raise ValidationError({"follow_up_on": _("The follow-up date cannot be in the past.")})
    interaction = Interaction(
        customer=customer,
        staff=staff,
        channel=channel,
        direction=direction,
        minutes=minutes,
        summary=summary or "",
        outcome=outcome,
        follow_up_on=follow_up_on,
        occurred_at=occurred_at or timezone.now(),
    )
    interaction.full_clean(exclude=["customer", "staff"])
    interaction.save()
    if follow_up_on is not None:
        FollowUp.objects.create(
            customer=customer,
            assigned_to_id=customer.owner_id or staff.pk,
            source=FollowUpSource.INTERACTION,
            source_ref=str(interaction.pk),
            interaction=interaction,
            reason=(summary or "").strip()[:255] or _("Follow up on the last interaction"),
            due_on=follow_up_on,
        )
    return interaction


@transaction.atomic
def accounts_assign(
    *, customer_ids: Iterable[int], owner: User | None, by: User, reason: str = ""
) -> int:
    """Make `owner` (None = unassigned) the owner of every listed customer. Customers already
    owned by `owner` are left alone; every actual change writes one OwnerChange row (bulk).
    Atomic, locks the customers. Returns the number of customers whose owner changed.
    Raises ValidationError for unknown customer ids or an owner who is not active staff.
    """
    ids = sorted({int(i) for i in customer_ids})
    if not ids:
        raise ValidationError({"customers": _("Select at least one account.")})
    _check_staff(owner, "owner")
    rows = list(
        Customer.objects.select_for_update()
        .filter(pk__in=ids)
        .order_by("pk")
        .values_list("pk", "owner_id")
    )
    if len(rows) != len(ids):
        missing = sorted(set(ids) - {pk for pk, _owner in rows})[:10]
        raise ValidationError(
            {
                "customers": _("Unknown customer ids: %(ids)s.")
                % {"ids": ", ".join(map(str, missing))}
            }
        )
    owner_id = owner.pk if owner else None
    changing = [(pk, old) for pk, old in rows if old != owner_id]
    if not changing:
        return 0
    now = timezone.now()
    Customer.objects.filter(pk__in=[pk for pk, _old in changing]).update(
        owner_id=owner_id, updated_at=now
    )
    OwnerChange.objects.bulk_create(
        [
            OwnerChange(
                customer_id=pk,
                from_owner_id=old,
                to_owner_id=owner_id,
                changed_by=by,
                changed_at=now,
                reason=(reason or "")[:255],
            )
            for pk, old in changing
        ],
        batch_size=5000,
    )
    return len(changing)


def owner_assign(*, customer: Customer, owner: User | None, by: User, reason: str = "") -> bool:
    """Assign one account; see accounts_assign. Returns whether the owner changed."""
    changed = accounts_assign(customer_ids=[customer.pk], owner=owner, by=by, reason=reason) == 1
    if changed:
        customer.owner = owner
    return changed


@transaction.atomic
def even_out_apply(*, assignments: dict[int, int], by: User, reason: str = "") -> int:
    """Apply an approved even-out proposal {customer_id: staff_id} in one transaction: all
    accounts move or none. Raises ValidationError for unknown customers or staff.
    Returns the number of customers whose owner changed.
    """
    if not assignments:
        raise ValidationError({"assignments": _("The proposal is empty.")})
    by_staff: dict[int, list[int]] = defaultdict(list)
    for customer_id, staff_id in assignments.items():
        by_staff[int(staff_id)].append(int(customer_id))
    staff = {u.pk: u for u in User.objects.filter(pk__in=list(by_staff))}
    unknown = set(by_staff) - set(staff)
    if unknown:
        raise ValidationError({"assignments": _("Unknown staff member in the proposal.")})
    changed = 0
    for staff_id in sorted(by_staff):
        changed += accounts_assign(
            customer_ids=by_staff[staff_id], owner=staff[staff_id], by=by, reason=reason
        )
    return changed


@transaction.atomic
def customer_cancel(*, customer: Customer, by: User, reason: str = "") -> Customer:
    """Mark the customer cancelled by staff: status churned and cancelled_at now. Atomic.
    Raises ValidationError when the customer is already cancelled.
    """
    locked = _lock(customer)
    if locked.cancelled_at is not None:
        raise ValidationError(_("This customer is already marked cancelled."))
    now = timezone.now()
    Customer.objects.filter(pk=locked.pk).update(
        status=CustomerStatus.CHURNED, cancelled_at=now, updated_at=now
    )
    customer.status, customer.cancelled_at = CustomerStatus.CHURNED, now
    return customer


@transaction.atomic
def follow_up_complete(*, follow_up: FollowUp, by: User, outcome: str) -> FollowUp:
    """Close an open follow-up with an outcome, recording who and when. Atomic.
    Raises ValidationError when it is already done or the outcome is empty.
    """
    outcome = (outcome or "").strip()
    if not outcome:
        raise ValidationError({"outcome": _("Say what came of the follow-up.")})
    locked = FollowUp.objects.select_for_update().get(pk=follow_up.pk)
    if locked.status != FollowUpStatus.OPEN:
        raise ValidationError(_("This follow-up is already done."))
    locked.status = FollowUpStatus.DONE
    locked.outcome = outcome[:2000]
    locked.completed_at = timezone.now()
    locked.completed_by = by
    locked.save(update_fields=["status", "outcome", "completed_at", "completed_by"])
    return locked
