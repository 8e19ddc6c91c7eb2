"""Reads for the crm screens: functions returning querysets or plain data. No writes."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import (
    DecimalField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    Window,
)
from django.db.models.functions import Coalesce, Ntile
from django.utils import timezone

from . import roles
from .assignments import Account, Proposal, even_out_proposal
from .models import (
    Customer,
    FollowUp,
    Interaction,
    MetricsRefresh,
    Order,
    OwnerChange,
    RatingChange,
    SocialProfile,
    User,
)

MONEY_FIELD = DecimalField(max_digits=20, decimal_places=6)
ZERO = Value(Decimal("0"), output_field=MONEY_FIELD)


def staff_list() -> QuerySet[User]:
    """Active staff who can own accounts: support staff, managers and administrators."""
    return (
        User.objects.filter(is_active=True)
        .filter(Q(groups__name__in=[roles.SUPPORT, roles.MANAGERS]) | Q(is_superuser=True))
        .distinct()
        .order_by("first_name", "last_name", "username")
    )


def customer_list(*, user, search: str = "") -> QuerySet[Customer]:
    """Customers visible to `user` (all staff see all customers), with owner and metrics joined.

    Ordered by id, so pagination is stable; filters and table ordering apply on top.
    """
    qs = Customer.objects.base_queryset().with_metrics()
    if search:
        qs = customer_search(qs=qs, text=search)
    return qs.order_by("id")


def customer_search(*, qs: QuerySet[Customer], text: str) -> QuerySet[Customer]:
    """Narrow `qs` to customers whose name, email or phone contains every word of `text`."""
    return qs.search(text)


@dataclass(frozen=True)
class ListCount:
    """How many rows a list shows, without COUNT(*) over a million rows.

    kind "estimate": the table's row estimate from PostgreSQL's statistics (pg_class.reltuples,
    refreshed by ANALYZE/autovacuum), for the unfiltered list. kind "exact": at most `limit`
    matches, whose ids are in `ids`. kind "more": more than `limit` matches (reading stops
    there)."""

    kind: str
    value: int
    ids: tuple = ()


COUNT_LIMIT = 1000


def table_row_estimate(model) -> int | None:
    """PostgreSQL's estimate of the rows of `model`'s table (None when never analysed or not
    on PostgreSQL)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [model._meta.db_table],
        )
        row = cursor.fetchone()
    return row[0] if row and row[0] >= 0 else None


def list_count(*, qs: QuerySet, filtered: bool, limit: int | None = None) -> ListCount:
    """The count line of a list: an estimate when unfiltered (exact on small tables), else the
    ids of at most `limit` (default COUNT_LIMIT) + 1 matches, read without ORDER BY so that
    PostgreSQL picks the filter's own index (a trigram search uses its GIN index)."""
    limit = limit or COUNT_LIMIT
    if not filtered:
        estimate = table_row_estimate(qs.model)
        if estimate is not None and estimate > limit:
            return ListCount("estimate", estimate)
    ids = tuple(qs.order_by().values_list("pk", flat=True)[: limit + 1])
    if len(ids) > limit:
        return ListCount("more", limit)
    return ListCount("exact", len(ids), ids)


def customer_get(*, customer_id: int) -> Customer:
    """The customer with owner, metrics and effort rater joined; raises Customer.DoesNotExist."""
    return Customer.objects.select_related("owner", "metrics", "effort_rated_by").get(
        pk=customer_id
    )


@dataclass
class CustomerDetail:
    customer: Customer
    rating_changes: list
    social_profiles: list
    total_followers: int
    orders: list
    interactions: list
    owner_changes: list
    open_follow_ups: list


def customer_interactions(*, customer: Customer, limit: int = 30) -> list[Interaction]:
    return list(Interaction.objects.filter(customer=customer).select_related("staff")[:limit])


def customer_detail(*, customer: Customer) -> CustomerDetail:
    """Everything the customer page shows, in a fixed number of queries."""
    profiles = list(SocialProfile.objects.filter(customer=customer))
    return CustomerDetail(
        customer=customer,
        rating_changes=list(
            RatingChange.objects.filter(customer=customer).select_related("changed_by")[:20]
        ),
        social_profiles=profiles,
        total_followers=sum(p.followers for p in profiles),
        orders=list(Order.objects.filter(customer=customer)[:20]),
        interactions=customer_interactions(customer=customer),
        owner_changes=list(
            OwnerChange.objects.filter(customer=customer).select_related(
                "from_owner", "to_owner", "changed_by"
            )[:20]
        ),
        open_follow_ups=list(
            FollowUp.objects.filter(customer=customer)
            .open()
            .select_related("assigned_to")
            .order_by("due_on", "id")
        ),
    )


def my_follow_ups(*, user) -> QuerySet[FollowUp]:
    """Open follow-ups assigned to `user`, due today or earlier first (oldest due first)."""
    return (
        FollowUp.objects.open().for_user(user).select_related("customer").order_by("due_on", "id")
    )


def my_accounts(*, user) -> QuerySet[Customer]:
    """Customers owned by `user`, with metrics joined, highest effort first."""
    return (
        Customer.objects.owned_by(user)
        .with_metrics()
        .order_by(F("service_effort").desc(nulls_last=True), "id")
    )


def cost_per_minute_expression():
    """Per interaction: minutes x (staff hourly cost, else the global default) / 60."""
    hourly = Coalesce(
        F("staff__hourly_cost"),
        Value(settings.CRM_STAFF_COST_PER_HOUR, output_field=MONEY_FIELD),
        output_field=MONEY_FIELD,
    )
    return ExpressionWrapper(F("minutes") * hourly / Value(60), output_field=MONEY_FIELD)


def customers_with_contribution(qs: QuerySet[Customer] | None = None) -> QuerySet[Customer]:
    """Annotate live lifetime margin_total, cost_to_serve_total and contribution_total (Decimal,
    0 when there is nothing) with correlated subqueries: right before any nightly job ran.
    """
    qs = Customer.objects.all() if qs is None else qs
    margin = (
        Order.objects.filter(customer=OuterRef("pk"))
        .order_by()
        .values("customer")
        .annotate(total=Sum("margin"))
        .values("total")
    )
    cost = (
        Interaction.objects.filter(customer=OuterRef("pk"))
        .order_by()
        .values("customer")
        .annotate(total=Sum(cost_per_minute_expression()))
        .values("total")
    )
    return qs.annotate(
        margin_total=Coalesce(Subquery(margin, output_field=MONEY_FIELD), ZERO),
        cost_to_serve_total=Coalesce(Subquery(cost, output_field=MONEY_FIELD), ZERO),
    ).annotate(
        contribution_total=ExpressionWrapper(
            F("margin_total") - F("cost_to_serve_total"), output_field=MONEY_FIELD
        )
    )


HIGH_VALUE_LIVE = "live"
HIGH_VALUE_NIGHTLY = "nightly"


def high_value_source() -> tuple[str, date | None]:
    """Where the high-value ranking comes from: the nightly metrics (value_decile computed by
    crm.metrics over lifetime contribution) with their date, or, before any nightly run, the
    live computation over all orders and interactions (slow at scale)."""
    latest = MetricsRefresh.objects.values_list("as_of", flat=True).first()  # the newest
    return (HIGH_VALUE_NIGHTLY, latest) if latest else (HIGH_VALUE_LIVE, None)


def _high_value_live() -> QuerySet[Customer]:
    ranked = customers_with_contribution().annotate(
        decile=Window(
            expression=Ntile(10), order_by=[F("contribution_total").desc(), F("id").asc()]
        )
    )
    # Rank everyone first, in a subquery: a plain .filter() next to the window filter would
    # be applied before the window and re-rank the filtered set.
    top_ids = ranked.filter(decile=1).values("pk")
    return customers_with_contribution(
        Customer.objects.select_related("owner").filter(pk__in=Subquery(top_ids))
    )


def _high_value_nightly() -> QuerySet[Customer]:
    return (
        Customer.objects.select_related("owner")
        .filter(metrics__value_decile=1)
        .annotate(
            margin_total=F("metrics__margin_lifetime"),
            cost_to_serve_total=F("metrics__cost_to_serve_lifetime"),
            contribution_total=F("metrics__contribution_lifetime"),
        )
    )


def high_value_accounts(
    *, unassigned_only: bool = False, owner=None, source: str | None = None
) -> QuerySet[Customer]:
    """The top 10 % of all customers by lifetime contribution (margin - cost to serve): decile 1
    of NTILE(10) over lifetime contribution, descending, ties broken by id.

    `source` (default: high_value_source()) "nightly" reads the decile and totals from
    crm.CustomerMetrics (an indexed read, as of the last nightly run); "live" computes them now
    from every order and interaction (correct before any run, but seconds at a million
    customers). Filters (unassigned, owner) apply after ranking, so they narrow the top decile
    rather than re-rank within the filtered set. Annotates margin_total, cost_to_serve_total
    and contribution_total.
    """
    source = source or high_value_source()[0]
    qs = _high_value_nightly() if source == HIGH_VALUE_NIGHTLY else _high_value_live()
    if unassigned_only:
        qs = qs.filter(owner__isnull=True)
    elif owner is not None:
        qs = qs.filter(owner=owner)
    return qs.order_by("-contribution_total", "id")


def even_out_preview(*, staff: list[User], unassigned_only: bool = False) -> Proposal:
    """The proposal for spreading the high-value accounts over `staff` by service effort.

    Reads only; nothing changes until even_out_apply is called with the approved assignments.
    """
    rows = high_value_accounts(unassigned_only=unassigned_only).values_list("id", "service_effort")
    accounts = [Account(customer_id=cid, effort=effort) for cid, effort in rows]
    return even_out_proposal(accounts, [u.pk for u in staff])


def customers_by_ids(ids) -> dict[int, Customer]:
    return {c.pk: c for c in Customer.objects.select_related("owner").filter(pk__in=list(ids))}


def today() -> date:
    return timezone.localdate()
