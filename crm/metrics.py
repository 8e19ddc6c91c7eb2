"""Per-customer derived metrics (crm.CustomerMetrics), refreshed set-based in SQL.

One call aggregates orders and interactions per customer (all customers with GROUP BYs, or
a scope with per-customer index lookups) into a temporary staging table, adds each customer's
payback day (one window sum over their events), writes only the metrics rows whose values
differ, keeps the cohort table (crm.CohortContribution) in step, then moves status and the
global ranks (value decile, suggested effort) in place where they change: re-ranked over
everyone on a full refresh, repaired around the stored tile boundaries (crm.RankBoundary) on
an incremental one. Each row records when time alone makes it stale (recheck_on), so that the
caller can find the customers whose windows moved. No Python loop over customers. The same SQL
runs on PostgreSQL (fast paths: ``mode()`` ordered-set aggregates, LATERAL lookups, parallel
workers) and on SQLite (portable variants of those pieces).

Definitions (domain.md): the window is the trailing ``CRM_METRICS_WINDOW_DAYS`` days up to and
including ``as_of`` (local dates in ``TIME_ZONE``); lifetime is everything up to ``as_of``.
Ties in "favourite" values go to the alphabetically first value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .models import (
    CohortContribution,
    Customer,
    CustomerMetrics,
    Interaction,
    MetricsRefresh,
    Order,
    RankBoundary,
    User,
)
from .side_query import SideQuery, side_query

BUYER_WINDOW_DAYS = 365  # "regular" = 4+ orders in the trailing 365 days (domain.md)
REGULAR_MIN_ORDERS = 4
STAGE_TABLE = "crm_metrics_stage"
# Customers whose metrics row was recomputed or changed in the last refresh of this database
# session (scope, changed values, a new value decile or status): the membership step reads it.
# A change of suggested effort alone is not recorded: no bucket rule reads it.
CHANGED_TABLE = "crm_metrics_changed"
SCOPE_TABLE = "crm_metrics_scope"  # the customers of a scoped refresh
# Customers whose metrics row the last refresh of this database session created.
NEW_TABLE = "crm_metrics_new"
# Bumped when the table's meaning changes: the nightly job then runs a full refresh.
METRICS_VERSION = 3
UNITS = CohortContribution.UNITS_PER_CURRENCY  # exact integer money: 1/6000 of the currency

# Columns computed per customer in the staging table, in insert order.
_STAGE_COLUMNS = [
    "order_count",
    "orders_window",
    "first_order_at",
    "last_order_at",
    "revenue_window",
    "margin_window",
    "revenue_lifetime",
    "margin_lifetime",
    "aov",
    "buyer_type",
    "preferred_channel",
    "favourite_category",
    "favourite_brand",
    "minutes_window",
    "minutes_lifetime",
    "cost_to_serve_window",
    "cost_to_serve_lifetime",
    "contribution_window",
    "contribution_lifetime",
    "status",
    "payback_days",
    "acquisition_month",
    "status_from",
    "cancelled_on",
    "service_effort",
    "influence",
    "acquisition_date",
    "acquisition_cost",
    "recheck_on",
]


def start_of_day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=timezone.get_default_timezone())


def metrics_params(as_of: dt.date) -> dict:
    """The time boundaries for `as_of` as SQL parameters (aware datetimes and dates)."""
    window_days = settings.CRM_METRICS_WINDOW_DAYS
    active, at_risk = settings.CRM_ACTIVE_DAYS, settings.CRM_AT_RISK_DAYS
    return {
        "as_of": as_of,
        "end_ts": start_of_day(as_of + dt.timedelta(days=1)),
        "window_start": start_of_day(as_of - dt.timedelta(days=window_days - 1)),
        "year_start": start_of_day(as_of - dt.timedelta(days=BUYER_WINDOW_DAYS - 1)),
        # "active" = ordered within ACTIVE days: local order date >= as_of - ACTIVE days.
        "active_ts": start_of_day(as_of - dt.timedelta(days=active)),
        "at_risk_ts": start_of_day(as_of - dt.timedelta(days=at_risk)),
        "active_date": as_of - dt.timedelta(days=active),
        "at_risk_date": as_of - dt.timedelta(days=at_risk),
        "rate": settings.CRM_STAFF_COST_PER_HOUR,
        "tz": settings.TIME_ZONE,
        "regular_min": REGULAR_MIN_ORDERS,
        "window_days": window_days,
        "year_days": BUYER_WINDOW_DAYS,
    }


def _preferred_channel_sql() -> str:
    """SQL (PostgreSQL, over a group of orders `o`): the most frequent channel, ties to the
    smallest value, as mode() gives it, from a count per channel (the channels are the model's
    choices, which a check constraint enforces): the first channel, in ascending order, whose
    count is at least that of every later one (the first with the greatest count). No sort per
    customer, as mode() makes: at 1M customers the orders' aggregate 4.6-5.1 -> 4.2-4.7 s. The
    choices are lowercase ASCII, ordered alike in every collation."""
    channels = sorted(Order._meta.get_field("channel").choices)
    values = [value for value, _label in channels]
    count = "COUNT(*) FILTER (WHERE o.channel = '{}')".format
    branches = [
        f"WHEN {' AND '.join(f'{count(v)} >= {count(w)}' for w in values[i + 1 :])} THEN '{v}'"
        for i, v in enumerate(values[:-1])
    ]
    # No orders (a scoped refresh's aggregate over none): NULL, as mode() gives.
    return f"CASE WHEN COUNT(*) = 0 THEN NULL {' '.join(branches)} ELSE '{values[-1]}' END"


def _pg() -> bool:
    return connection.vendor == "postgresql"


@contextlib.contextmanager
def planner_setting(cursor, name: str, value: str):
    """PostgreSQL: run the block's statements with setting `name` = `value` (a planner one such
    as jit, or lock_timeout), then put back what it was (both local to the transaction). Elsewhere:
    nothing."""
    with planner_settings(cursor, {name: value}):
        yield


@contextlib.contextmanager
def planner_settings(cursor, settings: dict[str, str]):
    """planner_setting for several settings at once: one statement to set them, one to put
    them back."""
    if not _pg():
        yield
        return
    names = list(settings)
    reads = ", ".join("current_setting(%s)" for _ in names)
    sets = ", ".join("set_config(%s, %s, true)" for _ in names)
    cursor.execute(
        f"SELECT {reads}, {sets}", [*names, *(v for n in names for v in (n, settings[n]))]
    )
    previous = cursor.fetchone()[: len(names)]
    yield
    cursor.execute(
        f"SELECT {sets}", [v for n, old in zip(names, previous, strict=True) for v in (n, old)]
    )


@contextlib.contextmanager
def key_lookups(cursor, *, strict: bool = False):
    """PostgreSQL: the block's joins look each row up by key (nested loops: no hash join, no
    merge join), for a few thousand rows joined with a table of a million, whose scan the
    planner may find cheaper once that table is compact or the small one's size is known.
    `strict`: nested loops on even where the caller turned them off, and no sequential scan
    where an index serves (a table without statistics, perhaps filling as the statement runs,
    is then never scanned once per row)."""
    settings = {"enable_hashjoin": "off", "enable_mergejoin": "off"}
    if strict:
        settings |= {"enable_nestloop": "on", "enable_seqscan": "off"}
    with planner_settings(cursor, settings):
        yield


def local_date(expr: str) -> str:
    """SQL: the local calendar date of timestamp `expr` (SQLite: its stored UTC date)."""
    return f"({expr} AT TIME ZONE %(tz)s)::date" if _pg() else f"date({expr})"


def _month_start(date_expr: str) -> str:
    """SQL: the first day of the month of date `date_expr`. PostgreSQL: through timestamp
    without time zone; a bare date would be cast to timestamptz, whose date_trunc converts
    through the session time zone (every order and interaction of the cohort table: 5-6 s ->
    4.2 s on two cores)."""
    return (
        f"date_trunc('month', CAST({date_expr} AS timestamp))::date"
        if _pg()
        else f"date({date_expr}, 'start of month')"
    )


def _acquisition_month(acquisition_date: str, first_order_day: str) -> str:
    """SQL: the customer's cohort (domain.md): the month of acquisition, or else of the first
    order."""
    return _month_start(f"COALESCE({acquisition_date}, {first_order_day})")


def _days_between(later: str, earlier: str) -> str:
    if _pg():
        return f"({later} - {earlier})"
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


def status_sql(alias: str = "") -> str:
    """SQL CASE for the status (domain.md "Status") from a metrics row's own columns."""
    a = f"{alias}." if alias else ""
    return (
        f"CASE WHEN {a}cancelled_on IS NOT NULL AND {a}cancelled_on <= %(as_of)s THEN 'churned' "
        f"WHEN {a}status_from >= %(active_date)s THEN 'active' "
        f"WHEN {a}status_from >= %(at_risk_date)s THEN 'at_risk' ELSE 'churned' END"
    )


def order_units(alias: str = "o") -> str:
    """SQL: an order's margin in exact integer units (1/UNITS of the currency)."""
    return f"CAST(ROUND({alias}.margin * {UNITS}) AS BIGINT)"


def staff_cents_sql(*, fenced: bool = True) -> str:
    """SQL subquery (id, cents): each staff member's hourly cost in cents, the default rate for
    those without one; interactions join it as `u`. `fenced` (PostgreSQL, where every
    interaction is read): computed once per staff member, not once per interaction, so that
    the per-interaction work is integer arithmetic. The fence is a GROUP BY, which keeps the
    subquery from being flattened into the join; OFFSET 0 would too, but would also keep the
    join out of parallel workers."""
    user = User._meta.db_table
    cents = "CAST(ROUND(COALESCE(hourly_cost, %(rate)s) * 100) AS BIGINT)"
    if fenced and _pg():
        return f"(SELECT id, MIN({cents}) AS cents FROM {user} GROUP BY id)"  # noqa: S608
    return f"(SELECT id, {cents} AS cents FROM {user})"  # noqa: S608


def interaction_units(alias: str = "i", staff: str = "u") -> str:
    """SQL: minus an interaction's cost to serve in exact integer units: minutes x hourly cost
    in cents (60 minutes x 100 cents = UNITS per currency unit per hour); `staff` is the
    interaction's row of staff_cents_sql()."""
    return f"-({alias}.minutes * {staff}.cents)"


def _least(expressions: list[str]) -> str:
    """SQL: the least non-NULL value (NULL if all are NULL), on both databases."""
    if _pg():
        return f"LEAST({', '.join(expressions)})"
    far = "'9999-12-31'"
    return f"NULLIF(MIN({', '.join(f'COALESCE({e}, {far})' for e in expressions)}), {far})"


def _add_days(date_expr: str, days: str) -> str:
    if _pg():
        return f"({date_expr} + {days})"
    return f"date({date_expr}, ({days}) || ' days')"


def _recheck_on_sql() -> str:
    """SQL (stage columns o, i, f, s): the first date on which a customer's row goes stale with
    time alone, so that an incremental run needs only `recheck_on <= as_of` to find the
    customers whose windows moved. An event of local date d leaves the window on d + window
    days and the buyer-type year on d + 365; a future-dated one arrives on its date; payback
    counts a customer from the acquisition date. SQLite compares UTC dates: a day early there.
    """
    recheck = _least(
        [
            _add_days(local_date("o.window_first_at"), "%(window_days)s"),
            _add_days(local_date("i.window_first_at"), "%(window_days)s"),
            _add_days(local_date("o.year_first_at"), "%(year_days)s"),
            local_date("f.first_at"),
            "CASE WHEN s.acquisition_date > %(as_of)s THEN s.acquisition_date END",
        ]
    )
    return recheck if _pg() else _add_days(recheck, "-1")


def _stage_sql(
    *,
    scoped: bool,
    keep_payback: bool = False,
    staff_array: bool = False,
    compare_stored: bool = False,
    ranged: bool = False,
    changed_only: bool = False,
) -> str:
    """SELECT producing one staging row per customer in scope.

    With `ranged` (not `scoped`): only the customers with ids from %(stage_from)s up to (not
    including) %(stage_to)s, their events read by index ranges (a full refresh shares its
    staging between two connections: _stage_with_side_queries).

    With `compare_stored` (a full refresh on PostgreSQL, whose payback days come from another
    statement), each row also carries how it compares with the stored metrics row, every
    column but payback_days (`old_state`: 0 no row, 1 the same, 2 different), and the stored
    payback_days (`old_payback`), for _write_sql. The comparison happens as the rows stream
    out in customer order, while the payback statement still runs beside this one: the diff
    that follows then reads only the staging and payback tables (1M customers: 3.9-4.4 s ->
    about 1 s after it).

    With `changed_only` (and `compare_stored`: a full concurrent refresh, whose payback days
    are compared elsewhere), only the rows that something writes come out: those that differ
    from the stored row or have none (`old_state` not 1), and those whose status differs from
    the customer's copy. The others (most of them on a usual night) are compared and dropped
    as they stream, never written into the staging table and read again (1M customers, 35k
    rows kept: 11.3-11.5 -> 10.1-10.3 s in psql for this statement alone).

    With `staff_array` (PostgreSQL, staff ids dense: _staff_ids_dense), each interaction's
    cost is looked up in _staff_cents_array instead of joining the staff table. In a full
    refresh the interactions then stay in their index's customer order, so that they are
    aggregated as they stream in parallel workers and merged with the customers, the orders'
    aggregate likewise, with no hash table of a million customers (1M customers: 13-17 s ->
    9.4-9.8 s for this statement alone). In a scoped one each customer's interactions are
    summed without a hash join per customer (19k customers: 185 -> 96 ms for the
    interactions' part).

    With `keep_payback` (PostgreSQL, scoped, watermarks %(max_o)s and %(max_i)s given), a
    customer who had paid back, with the same acquisition date and cost and no order or
    interaction above the watermarks dated on or before the payback day, keeps the stored
    payback day: the cumulative contribution up to that day is unchanged, and time alone cannot
    move it. The others get NULL, for _payback_sql to compute."""
    pg = _pg()
    customer = Customer._meta.db_table
    order = Order._meta.db_table
    interaction = Interaction._meta.db_table
    scope_from = f"{customer} c"
    if scoped:
        scope_from += f" JOIN {SCOPE_TABLE} x ON x.customer_id = c.id"
    elif ranged:
        scope_from += " WHERE c.id >= %(stage_from)s AND c.id < %(stage_to)s"
    # PostgreSQL, scoped: one index lookup per customer (LATERAL) instead of a join whose plan
    # rests on the estimated orders per customer and can pick a scan of every order.
    lateral = pg and scoped
    keep_payback = keep_payback and lateral
    staff_array = staff_array and pg

    in_window = "o.placed_at >= %(window_start)s"
    if pg:
        # One pass over the orders: mode() ignores NULLs and returns the smallest of tied values.
        modes_cte = ""
        modes_cols = (
            f", {_preferred_channel_sql()} AS preferred_channel"
            ", mode() WITHIN GROUP (ORDER BY NULLIF(o.category, '')) AS favourite_category"
            ", mode() WITHIN GROUP (ORDER BY NULLIF(o.brand, '')) AS favourite_brand"
        )
        modes_join = ""
        mode_ref = "o"
    else:

        def mode_cte(name: str, column: str) -> str:
            return (
                f", {name} AS (SELECT customer_id, value FROM ("  # noqa: S608
                f"SELECT o.customer_id, o.{column} AS value, ROW_NUMBER() OVER ("
                f"PARTITION BY o.customer_id ORDER BY COUNT(*) DESC, o.{column}) AS rn "
                f"FROM {order} o JOIN scope s ON s.customer_id = o.customer_id "
                f"WHERE o.placed_at < %(end_ts)s AND o.{column} <> '' "
                f"GROUP BY o.customer_id, o.{column}) ranked WHERE rn = 1)"
            )

        modes_cte = (
            mode_cte("m_channel", "channel")
            + mode_cte("m_category", "category")
            + mode_cte("m_brand", "brand")
        )
        modes_cols = ""
        modes_join = (
            " LEFT JOIN m_channel ON m_channel.customer_id = s.customer_id"
            " LEFT JOIN m_category ON m_category.customer_id = s.customer_id"
            " LEFT JOIN m_brand ON m_brand.customer_id = s.customer_id"
        )
        mode_ref = None

    def mode_col(name: str, cte: str) -> str:
        return f"COALESCE({mode_ref}.{name}, '')" if mode_ref else f"COALESCE({cte}.value, '')"

    i_window = "i.occurred_at >= %(window_start)s"
    cost, staff_join = _interaction_cost_sql(staff_array=staff_array, fenced=not lateral)
    last_day = local_date("o.last_order_at")
    first_day = local_date("o.first_order_at")
    # The first order / interaction above the watermarks (payback is kept if it comes later).
    # The interactions' comes from the new rows alone (i_new below), so that each customer's
    # interactions are read from their covering index without the table (35k customers:
    # 0.44 -> 0.40 s a half).
    o_new = ""
    if keep_payback:
        o_new = "\n        MIN(CASE WHEN o.id > %(max_o)s THEN o.placed_at END) AS new_first_at,"
    o_aggs = f"""COUNT(*) AS order_count,
        SUM(CASE WHEN {in_window} THEN 1 ELSE 0 END) AS orders_window,
        SUM(CASE WHEN o.placed_at >= %(year_start)s THEN 1 ELSE 0 END) AS orders_year,
        MIN(o.placed_at) AS first_order_at,
        MAX(o.placed_at) AS last_order_at,
        SUM(CASE WHEN {in_window} THEN o.revenue ELSE 0 END) AS revenue_window,
        SUM(CASE WHEN {in_window} THEN o.margin ELSE 0 END) AS margin_window,
        SUM(o.revenue) AS revenue_lifetime,
        SUM(o.margin) AS margin_lifetime,
        MIN(o.margin) AS min_margin,{o_new}
        MIN(CASE WHEN {in_window} THEN o.placed_at END) AS window_first_at,
        MIN(CASE WHEN o.placed_at >= %(year_start)s THEN o.placed_at END) AS year_first_at
        {modes_cols}"""
    # The window's sums as FILTERs (NULL without any, as COALESCE below expects): an
    # interaction before the window adds nothing, rather than a zero (1M customers: the
    # interactions' aggregate 1.88-1.95 -> 1.78-1.81 s).
    i_aggs = f"""SUM(i.minutes) FILTER (WHERE {i_window}) AS minutes_window,
        SUM(i.minutes) AS minutes_lifetime,
        ROUND(SUM({cost}) FILTER (WHERE {i_window}) / {UNITS}.0, 2) AS cost_window,
        ROUND(SUM({cost}) / {UNITS}.0, 2) AS cost_lifetime,
        MIN(i.occurred_at) FILTER (WHERE {i_window}) AS window_first_at"""
    if lateral:
        ctes = ""
        joins = (
            f"LEFT JOIN LATERAL (SELECT {o_aggs} FROM {order} o "  # noqa: S608
            "WHERE o.customer_id = s.customer_id AND o.placed_at < %(end_ts)s) o ON TRUE\n"
            f"LEFT JOIN LATERAL (SELECT {i_aggs} FROM {interaction} i "
            f"{staff_join} "
            "WHERE i.customer_id = s.customer_id AND i.occurred_at < %(end_ts)s) i ON TRUE\n"
            f"LEFT JOIN LATERAL (SELECT LEAST((SELECT MIN(placed_at) FROM {order} "
            "WHERE customer_id = s.customer_id AND placed_at >= %(end_ts)s), "
            f"(SELECT MIN(occurred_at) FROM {interaction} "
            "WHERE customer_id = s.customer_id AND occurred_at >= %(end_ts)s)) AS first_at) f "
            "ON TRUE"
        )
        if keep_payback:
            ctes = (
                f", i_new AS (SELECT customer_id, MIN(occurred_at) AS new_first_at "  # noqa: S608
                f"FROM {interaction} WHERE id > %(max_i)s AND occurred_at < %(end_ts)s "
                "GROUP BY customer_id)"
            )
            joins += (
                "\nLEFT JOIN i_new ON i_new.customer_id = s.customer_id"
                f"\nLEFT JOIN {CustomerMetrics._meta.db_table} old "
                "ON old.customer_id = s.customer_id"
            )
    else:
        # GROUP BYs; a full refresh does not join the scope, so that each aggregation is a
        # plain GROUP BY (the one over interactions then runs in parallel workers).
        only = " JOIN scope s ON s.customer_id = {alias}.customer_id" if scoped else ""
        o_only, i_only = only.format(alias="o"), only.format(alias="i")
        within = ""
        if ranged and not scoped:
            within = (
                " AND {alias}.customer_id >= %(stage_from)s AND {alias}.customer_id < %(stage_to)s"
            )
        o_in, i_in = within.format(alias="o"), within.format(alias="i")
        future_interactions = f"{interaction} i{i_only}"
        if pg and not scoped:
            # By staff member, on the index of (staff, time): a range of future rows each,
            # instead of a scan of the whole index (1M customers: 0.26 s -> about 1 ms).
            future_interactions = (
                f"{User._meta.db_table} u CROSS JOIN LATERAL (SELECT customer_id, occurred_at "  # noqa: S608
                f"FROM {interaction} WHERE staff_id = u.id AND occurred_at >= %(end_ts)s) i"
            )
        ctes = f"""
, o AS (
    SELECT o.customer_id, {o_aggs}
    FROM {order} o{o_only}
    WHERE o.placed_at < %(end_ts)s{o_in}
    GROUP BY o.customer_id
), i AS (
    SELECT i.customer_id, {i_aggs}
    FROM {interaction} i{i_only}{staff_join}
    WHERE i.occurred_at < %(end_ts)s{i_in}
    GROUP BY i.customer_id
), f AS (
    SELECT customer_id, MIN(first_at) AS first_at FROM (
        SELECT o.customer_id, o.placed_at AS first_at
        FROM {order} o{o_only}
        WHERE o.placed_at >= %(end_ts)s{o_in}
        UNION ALL
        SELECT i.customer_id, i.occurred_at
        FROM {future_interactions}
        WHERE i.occurred_at >= %(end_ts)s{i_in}
    ) future GROUP BY customer_id
)"""  # noqa: S608
        joins = "LEFT JOIN o ON o.customer_id = s.customer_id\n"
        joins += "LEFT JOIN i ON i.customer_id = s.customer_id\n"
        joins += "LEFT JOIN f ON f.customer_id = s.customer_id"
    payback = "CAST(NULL AS INTEGER)"  # full refresh on PostgreSQL: joined in _write_sql
    if keep_payback:
        payback = (
            "CASE WHEN old.acquisition_date = s.acquisition_date "
            "AND old.acquisition_cost = s.acquisition_cost AND s.acquisition_date <= %(as_of)s "
            f"AND COALESCE({local_date('LEAST(o.new_first_at, i_new.new_first_at)')} "
            "> old.acquisition_date + old.payback_days, TRUE) "
            "THEN old.payback_days END"
        )
    final = f"SELECT staged.*, {status_sql('staged')} AS status FROM staged"  # noqa: S608
    if compare_stored:
        compared = [c for c in _STAGE_COLUMNS if c != "payback_days"]
        final = (
            "SELECT st.*, CASE WHEN m.customer_id IS NULL THEN 0 "  # noqa: S608
            f"WHEN {_differs('m', 'st', compared)} THEN 2 ELSE 1 END AS old_state, "
            "m.payback_days AS old_payback "
            f"FROM st LEFT JOIN {CustomerMetrics._meta.db_table} m "
            "ON m.customer_id = st.customer_id"
        )
        if changed_only:
            status_moves = _distinct("compared.status", "compared.customer_status")
            final = (
                f"SELECT * FROM ({final}) compared "  # noqa: S608
                f"WHERE compared.old_state <> 1 OR {status_moves}"
            )
        final = f", st AS (SELECT staged.*, {status_sql('staged')} AS status FROM staged)\n{final}"  # noqa: S608
    return f"""
WITH scope AS (
    SELECT c.id AS customer_id, c.cancelled_at, c.acquisition_date, c.acquisition_cost,
        c.created_at, c.service_effort, c.influence, c.status AS customer_status
    FROM {scope_from}
){ctes}{modes_cte}, staged AS (
SELECT s.customer_id,
    COALESCE(o.order_count, 0) AS order_count,
    COALESCE(o.orders_window, 0) AS orders_window,
    o.first_order_at,
    o.last_order_at,
    COALESCE(o.revenue_window, 0) AS revenue_window,
    COALESCE(o.margin_window, 0) AS margin_window,
    COALESCE(o.revenue_lifetime, 0) AS revenue_lifetime,
    COALESCE(o.margin_lifetime, 0) AS margin_lifetime,
    CASE WHEN o.order_count > 0 THEN ROUND(o.revenue_lifetime / o.order_count, 2) END AS aov,
    CASE WHEN COALESCE(o.order_count, 0) = 0 THEN 'none'
         WHEN o.order_count = 1 THEN 'first_time'
         WHEN o.orders_year >= %(regular_min)s THEN 'regular'
         ELSE 'occasional' END AS buyer_type,
    {mode_col("preferred_channel", "m_channel")} AS preferred_channel,
    {mode_col("favourite_category", "m_category")} AS favourite_category,
    {mode_col("favourite_brand", "m_brand")} AS favourite_brand,
    COALESCE(i.minutes_window, 0) AS minutes_window,
    COALESCE(i.minutes_lifetime, 0) AS minutes_lifetime,
    COALESCE(i.cost_window, 0) AS cost_to_serve_window,
    COALESCE(i.cost_lifetime, 0) AS cost_to_serve_lifetime,
    COALESCE(o.margin_window, 0) - COALESCE(i.cost_window, 0) AS contribution_window,
    COALESCE(o.margin_lifetime, 0) - COALESCE(i.cost_lifetime, 0) AS contribution_lifetime,
    {payback} AS payback_days,
    {_acquisition_month("s.acquisition_date", first_day)} AS acquisition_month,
    COALESCE({last_day}, s.acquisition_date, {local_date("s.created_at")}) AS status_from,
    {local_date("s.cancelled_at")} AS cancelled_on,
    s.service_effort,
    s.influence,
    s.acquisition_date,
    s.acquisition_cost,
    {_recheck_on_sql()} AS recheck_on,
    COALESCE(o.min_margin, 0) AS min_margin,
    s.customer_status
FROM scope s
{joins}{modes_join}
)
{final}
"""  # noqa: S608


PAYBACK_TABLE = "crm_metrics_payback"  # full refresh on PostgreSQL: (customer_id, days)


def _payback_sql(*, scoped: bool = False, everyone: bool = False, ordered: bool = True) -> str:
    """UPDATE of the staging table's payback_days: for each customer with an acquisition cost
    and date, the days from acquisition until cumulative contribution (margin minus cost to
    serve, from the acquisition day, at the end of each day) first reaches the cost.

    Exact integer units, one window sum per customer. Cumulative contribution never exceeds
    the sum of positive order margins; for a customer without a negative order margin that is
    the lifetime margin, so customers below their CAC there cannot pay back and are skipped.

    With `everyone` (PostgreSQL, full refresh), a SELECT of (customer_id, days) for every
    customer instead, reading only the customer, order, interaction and staff tables, in
    index order without a sort (_payback_everyone_sql). The metrics write then joins it
    (_write_sql). Events count from the local acquisition day, as below.
    """
    if everyone:
        return _payback_everyone_sql(ordered=ordered)
    candidates = f"""
    SELECT customer_id, acquisition_date, acquisition_cost FROM {STAGE_TABLE}
    WHERE acquisition_cost > 0 AND acquisition_date IS NOT NULL AND payback_days IS NULL
      AND acquisition_date <= %(as_of)s
      AND (%(negative_costs)s = 1 OR min_margin < 0 OR margin_lifetime >= acquisition_cost)
"""  # noqa: S608
    select = _payback_days_sql(candidates, lookups=scoped and _pg())
    return f"""
UPDATE {STAGE_TABLE} SET payback_days = p.days FROM ({select}) AS p
WHERE p.customer_id = {STAGE_TABLE}.customer_id
"""  # noqa: S608


def _payback_days_sql(candidates: str, *, lookups: bool, staff_array: bool = False) -> str:
    """SELECT (customer_id, days) of the customers of `candidates` (a SELECT of customer_id,
    acquisition_date, acquisition_cost, each with a cost and a date on or before as_of) who
    paid back: the days from acquisition until their cumulative contribution at the end of a
    day first reaches the cost (_payback_sql). `lookups` (PostgreSQL, a few customers): each
    customer's events by index lookups (see _stage_sql), with `staff_array` their costs from
    _staff_cents_array rather than a join with the staff per customer; else a join per event
    table."""
    order, interaction = Order._meta.db_table, Interaction._meta.db_table
    since = ""
    if _pg():  # drop events before the acquisition day before sorting (SQLite: filter below)
        since = " AND {ts} >= (e.acquisition_date::timestamp AT TIME ZONE %(tz)s)"
    o_day, i_day = local_date("o.placed_at"), local_date("i.occurred_at")
    o_since, i_since = since.format(ts="o.placed_at"), since.format(ts="i.occurred_at")
    columns = "e.customer_id, e.acquisition_date, e.acquisition_cost"
    if lookups:
        cost, staff_join = _interaction_cost_sql(staff_array=staff_array, fenced=False)
        events = f"""
    SELECT {columns}, ev.day, ev.amount FROM candidates e CROSS JOIN LATERAL (
        SELECT {o_day} AS day, {order_units()} AS amount FROM {order} o
        WHERE o.customer_id = e.customer_id AND o.placed_at < %(end_ts)s{o_since}
        UNION ALL
        SELECT {i_day}, -({cost})
        FROM {interaction} i{staff_join}
        WHERE i.customer_id = e.customer_id AND i.occurred_at < %(end_ts)s{i_since}
    ) ev"""  # noqa: S608
    else:  # SQLite: a join per event table
        events = f"""
    SELECT {columns}, {o_day} AS day, {order_units()} AS amount
    FROM candidates e JOIN {order} o ON o.customer_id = e.customer_id
    WHERE o.placed_at < %(end_ts)s{o_since}
    UNION ALL
    SELECT {columns}, {i_day} AS day, {interaction_units()} AS amount
    FROM candidates e JOIN {interaction} i ON i.customer_id = e.customer_id
    JOIN {staff_cents_sql()} u ON u.id = i.staff_id
    WHERE i.occurred_at < %(end_ts)s{i_since}"""  # noqa: S608
    return f"""
WITH candidates AS ({candidates}), events AS ({events}
), running AS (
    -- The default frame (RANGE ... CURRENT ROW) takes in every event of the same day: the
    -- cumulative contribution at the end of each day, without a per-day GROUP BY.
    SELECT customer_id, acquisition_date, acquisition_cost, day,
        SUM(amount) OVER (PARTITION BY customer_id ORDER BY day) AS cum
    FROM events WHERE day >= acquisition_date
)
SELECT customer_id, MIN({_days_between("day", "acquisition_date")}) AS days
FROM running WHERE cum >= acquisition_cost * {UNITS}
GROUP BY customer_id
"""  # noqa: S608


STAFF_ARRAY_MAX_SPAN = 1_000_000  # staff ids (highest - lowest) that _staff_cents_array takes


def _staff_ids_dense(cursor) -> bool:
    """Whether the staff ids fit _staff_cents_array (STAFF_ARRAY_MAX_SPAN)."""
    user = User._meta.db_table
    cursor.execute(f"SELECT COALESCE(MAX(id) - MIN(id), 0) FROM {user}")  # noqa: S608
    return cursor.fetchone()[0] <= STAFF_ARRAY_MAX_SPAN


def _staff_cents_array() -> tuple[str, str]:
    """SQL (array, lower bound): every staff member's hourly cost in cents, as
    staff_cents_sql(), in an array indexed by user id from the lowest id (0 for gaps), and that
    lowest id. Both are uncorrelated subqueries, computed once per statement: an interaction
    looks its cost up by subscript, so that the interactions keep their index order (a join
    with the staff table would hash them)."""
    user = User._meta.db_table
    low = f"(SELECT MIN(id) FROM {user})"  # noqa: S608
    array = (
        "(SELECT array_agg(COALESCE(u.cents, 0) ORDER BY g.id) "  # noqa: S608
        f"FROM generate_series({low}, (SELECT MAX(id) FROM {user})) AS g(id) "
        f"LEFT JOIN {staff_cents_sql(fenced=False)} u ON u.id = g.id)"
    )
    return array, low


def _interaction_cost_sql(*, staff_array: bool, fenced: bool = True) -> tuple[str, str]:
    """SQL (cost, join) of an interaction `i`'s cost to serve in 1/UNITS of the currency
    (exact, integer arithmetic): from _staff_cents_array with `staff_array` (no join, so that
    the interactions keep their index order), else from staff_cents_sql(fenced=...) joined as
    `u` (the join clause, to follow the interaction table)."""
    if staff_array:
        cents, low = _staff_cents_array()
        return f"i.minutes * {cents}[i.staff_id - {low} + 1]", ""
    return "i.minutes * u.cents", f" JOIN {staff_cents_sql(fenced=fenced)} u ON u.id = i.staff_id"


def _payback_everyone_sql(*, ordered: bool = True) -> str:
    """_payback_sql(everyone=True): PostgreSQL, every customer, in one pass without a sort.

    The orders and the interactions are read in (customer, time) order from their covering
    indexes (crm.Order, crm.Interaction: index-only scans) and merged (Merge Append), merged
    with the customers in key order, and summed in that order: no event is sorted or hashed,
    in one process (1M customers, 16M events: 15.9 s on two cores with parallel sorts ->
    12.9 s in one process), and the first qualifying event of each customer is kept as they
    stream (DISTINCT ON in that order). The running sum and the target are bigint (integer
    units; crm_sum_int8, migration crm 0013): no numeric per event (13.6 -> 12 s). An event
    counts from the local acquisition day; the cumulative contribution is compared at the last
    event of each local day (the next event of the customer falls on another day), so that it
    is the one at the end of the day, as in
    _payback_sql.

    Not `ordered` (staff ids spread over more than STAFF_ARRAY_MAX_SPAN, too many for the
    array): the events are sorted by customer and day instead (_payback_sorted_sql)."""
    if not ordered:
        return _payback_sorted_sql()
    order, interaction = Order._meta.db_table, Interaction._meta.db_table
    customer = Customer._meta.db_table
    cents, low = _staff_cents_array()
    return f"""
WITH events AS (
    (SELECT o.customer_id, o.placed_at AS at, {order_units()} AS amount
     FROM {order} o WHERE o.placed_at < %(end_ts)s ORDER BY 1, 2)
    UNION ALL
    (SELECT i.customer_id, i.occurred_at, -(i.minutes * {cents}[i.staff_id - {low} + 1])
     FROM {interaction} i WHERE i.occurred_at < %(end_ts)s ORDER BY 1, 2)
), c AS (
    -- once per customer, not per event: the target in units and the acquisition day's start
    SELECT id, acquisition_date, CAST(acquisition_cost * {UNITS} AS BIGINT) AS target,
        (acquisition_date::timestamp AT TIME ZONE %(tz)s) AS start
    FROM {customer}
    WHERE acquisition_cost > 0 AND acquisition_date IS NOT NULL
      AND acquisition_date <= %(as_of)s
    ORDER BY id OFFSET 0
), running AS (
    SELECT e.customer_id, c.acquisition_date, c.target, e.at,
        crm_sum_int8(e.amount) OVER w AS cum, LEAD(e.at) OVER w AS next_at
    FROM events e JOIN c ON c.id = e.customer_id
    WHERE e.at >= c.start
    WINDOW w AS (PARTITION BY e.customer_id ORDER BY e.at ROWS UNBOUNDED PRECEDING)
)
-- the first event, in time order, that ends a day at or above the target
SELECT DISTINCT ON (customer_id) customer_id,
    {local_date("at")} - acquisition_date AS days
FROM running
WHERE cum >= target AND (next_at IS NULL OR {local_date("next_at")} <> {local_date("at")})
ORDER BY customer_id, at
"""  # noqa: S608


def _payback_sorted_sql() -> str:
    """_payback_everyone_sql() for staff ids too spread out for an array: the events (narrow
    rows: customer, day, amount) are sorted by customer and day, in parallel workers, then
    merged with the customers in key order and summed per day (the default frame takes in
    every event of the same day)."""
    order, interaction = Order._meta.db_table, Interaction._meta.db_table
    customer = Customer._meta.db_table
    return f"""
WITH events AS (
    SELECT o.customer_id, {local_date("o.placed_at")} AS day, {order_units()} AS amount
    FROM {order} o WHERE o.placed_at < %(end_ts)s
    UNION ALL
    SELECT i.customer_id, {local_date("i.occurred_at")}, {interaction_units()}
    FROM {interaction} i JOIN {staff_cents_sql()} u ON u.id = i.staff_id
    WHERE i.occurred_at < %(end_ts)s
), sorted AS (
    SELECT * FROM events ORDER BY customer_id, day OFFSET 0
), running AS (
    SELECT e.customer_id, c.acquisition_date, c.acquisition_cost, e.day,
        SUM(e.amount) OVER (PARTITION BY e.customer_id ORDER BY e.day) AS cum
    FROM sorted e JOIN {customer} c ON c.id = e.customer_id
    WHERE c.acquisition_cost > 0 AND c.acquisition_date IS NOT NULL
      AND c.acquisition_date <= %(as_of)s AND e.day >= c.acquisition_date
)
SELECT customer_id, MIN(day - acquisition_date) AS days
FROM running WHERE cum >= acquisition_cost * {UNITS}
GROUP BY customer_id
"""  # noqa: S608


def _payback_cohorts_sql(*, staff_array: bool) -> str:
    """SELECT for a full refresh's second connection: in one pass over every order and
    interaction, each customer's payback days (rows with a customer_id; days NULL when not
    paid back, or when `dip` says that _payback_dips_sql must find them) and the cohort
    table's cells of the customers with an acquisition date (rows without a customer_id:
    cohort, month as a timestamp, units; no days, dip false). The customers
    without an acquisition date, whose cohort is their first order's month, come from
    _undated_cohorts_sql.

    The events are read as _payback_everyone_sql reads them (covering indexes in customer and
    time order, merged, no sort; with `staff_array`), every event, so that the cohort cells
    take in future-dated ones as _cohorts_sql does; the running sum takes only those from the
    local acquisition day to the end of as_of (a window aggregate's FILTER). One grouping
    set keeps each customer's rows in their order (the payback days), the other hashes the
    cohort cells (a few hundred).

    The payback day is the first local day whose cumulative contribution at its end reaches
    the target (_payback_sql). The running sum starts below the target and crosses it upwards
    and downwards in turn; each event is compared with the target before and after it (two
    integer comparisons, no date). With the first upward crossing U and the first downward
    one D: if D is on a later local day than U, or there is none, every day before U's ends
    below the target and U's day ends at or above it: U's day is the payback day. If D falls
    on U's own day (a dip the same day: about 1 % of customers), `dip` is true and the days are
    left to _payback_dips_sql, which sums those customers' events day by day. Before, each
    event at or above the target was checked for being the last of its local day, with the
    next event's time (LEAD) and local dates: at 1M customers 11.1-11.8 -> about 10 s."""
    order, interaction = Order._meta.db_table, Interaction._meta.db_table
    customer = Customer._meta.db_table
    cost, staff_join = _interaction_cost_sql(staff_array=staff_array)
    counted = "at >= start AND at < %(end_ts)s"
    up_day, down_day = local_date("up"), local_date("down")
    return f"""
WITH events AS (
    (SELECT o.customer_id, o.placed_at AS at, {order_units()} AS amount
     FROM {order} o ORDER BY 1, 2)
    UNION ALL
    (SELECT i.customer_id, i.occurred_at, -({cost})
     FROM {interaction} i{staff_join} ORDER BY 1, 2)
), c AS (
    -- once per customer, not per event: the target in units, the acquisition day's start.
    -- GROUP BY the key keeps these from being computed per event, as OFFSET 0 would, and
    -- shows the merge join below that each event meets one customer: no Materialize of the
    -- customers to mark and restore (11.5-12.3 s against 12.3-13.1 s at 1M customers).
    SELECT id, acquisition_date,
        CASE WHEN acquisition_cost > 0 AND acquisition_date <= %(as_of)s
            THEN CAST(acquisition_cost * {UNITS} AS BIGINT) END AS target,
        (acquisition_date::timestamp AT TIME ZONE %(tz)s) AS start,
        {_month_start("acquisition_date")} AS cohort
    FROM {customer}
    WHERE acquisition_date IS NOT NULL
    GROUP BY id
), running AS (
    SELECT e.customer_id, c.acquisition_date, c.target, c.start, c.cohort, e.at, e.amount,
        crm_sum_int8(e.amount) FILTER (WHERE e.at >= c.start AND e.at < %(end_ts)s) OVER (
            PARTITION BY e.customer_id ORDER BY e.at ROWS UNBOUNDED PRECEDING) AS cum
    FROM events e JOIN c ON c.id = e.customer_id
), crossed AS (
    SELECT customer_id, cohort, date_trunc('month', at AT TIME ZONE %(tz)s) AS month,
        MIN(at) FILTER (WHERE cum >= target AND cum - amount < target AND {counted}) AS up,
        MIN(at) FILTER (WHERE cum < target AND cum - amount >= target AND {counted}) AS down,
        MIN(acquisition_date) AS acquisition_date,
        SUM(amount) AS units
    FROM running
    GROUP BY GROUPING SETS ((customer_id), (cohort, 3))
)
SELECT customer_id, cohort, month,
    CASE WHEN customer_id IS NOT NULL AND (down IS NULL OR {down_day} <> {up_day})
        THEN {up_day} - acquisition_date END AS days,
    COALESCE(customer_id IS NOT NULL AND {down_day} = {up_day}, FALSE) AS dip,
    units
FROM crossed
"""  # noqa: S608


def _payback_dips_sql(table: str, *, staff_array: bool) -> list[str]:
    """Statements setting, in `table` (_payback_cohorts_sql's rows), the payback days of the
    customers whose running sum dips below the target on the day it first reaches it (`dip`):
    their events summed day by day (_payback_days_sql), each customer's looked up by index.
    The dips are first copied into a table of their own, with where each row lies: small and
    without statistics, it makes the planner look the customers up by key, and the rows are
    then written where they lie (TID scans) rather than found by a scan of every row (at 1M
    customers, 5.7k dips: 0.73 s with the table of every customer, unanalyzed, estimated at 30
    % dips; 0.68 s in the job with the dips' own table, then scanning every row to write;
    about 0.35 s now)."""
    customer = Customer._meta.db_table
    dips = f"{table}_dips"
    candidates = (
        f"SELECT c.id AS customer_id, c.acquisition_date, c.acquisition_cost "  # noqa: S608
        f"FROM {dips} d JOIN {customer} c ON c.id = d.customer_id"
    )
    select = _payback_days_sql(candidates, lookups=True, staff_array=staff_array)
    return [
        f"DROP TABLE IF EXISTS {dips}",
        f"CREATE TEMPORARY TABLE {dips} AS SELECT ctid AS row_id, customer_id "  # noqa: S608
        f"FROM {table} WHERE dip",
        f"UPDATE {table} SET days = x.days FROM (SELECT d.row_id, e.days FROM {dips} d "  # noqa: S608
        f"JOIN ({select}) AS e ON e.customer_id = d.customer_id) AS x "
        f"WHERE {table}.ctid = x.row_id",
        f"DROP TABLE {dips}",
    ]


def _undated_cohorts_sql(*, staff_array: bool) -> str:
    """SELECT of the cohort cells (cohort, month, units) of the customers without an
    acquisition date (their cohort is the month of their first order), each customer's events
    looked up by index: the rest of _payback_cohorts_sql's cells."""
    customer, order = Customer._meta.db_table, Order._meta.db_table
    interaction = Interaction._meta.db_table
    cost, staff_join = _interaction_cost_sql(staff_array=staff_array, fenced=False)
    first_order = (
        f"(SELECT MIN(f.placed_at) FROM {order} f "  # noqa: S608
        "WHERE f.customer_id = c.id AND f.placed_at < %(end_ts)s)"
    )
    return f"""
WITH c AS (
    SELECT c.id, {_month_start(local_date(first_order))} AS cohort
    FROM {customer} c WHERE c.acquisition_date IS NULL
)
SELECT c.cohort, {_month_start(local_date("e.at"))} AS month, SUM(e.units)
FROM c CROSS JOIN LATERAL (
    SELECT o.placed_at AS at, {order_units()} AS units
    FROM {order} o WHERE o.customer_id = c.id
    UNION ALL
    SELECT i.occurred_at, -({cost})
    FROM {interaction} i{staff_join} WHERE i.customer_id = c.id
) e
WHERE c.cohort IS NOT NULL
GROUP BY 1, 2
"""  # noqa: S608


def _negative_costs_sql() -> str:
    """1 when some staff member (or the default) has a negative hourly cost: then no customer
    can be skipped by the lifetime-margin bound of _payback_sql."""
    user = User._meta.db_table
    return (
        f"SELECT CASE WHEN %(rate)s < 0 OR EXISTS (SELECT 1 FROM {user} "  # noqa: S608
        "WHERE hourly_cost < 0) THEN 1 ELSE 0 END"
    )


def _distinct(lhs: str, rhs: str) -> str:
    """SQL: `lhs` and `rhs` (values or row values) differ, NULLs compared as values."""
    return f"({lhs} {'IS DISTINCT FROM' if _pg() else 'IS NOT'} {rhs})"


def _differs(left: str, right: str, columns: list[str]) -> str:
    """SQL: the row values of `columns` differ between aliases `left` and `right`."""
    lhs = ", ".join(f"{left}.{c}" for c in columns)
    rhs = ", ".join(f"{right}.{c}" for c in columns)
    return _distinct(f"({lhs})", f"({rhs})")


def _write_sql(
    *,
    scoped: bool,
    payback_from: str | None = None,
    tiles: dict | None = None,
    old_rows: tuple[str, str] | None = None,
    stored_payback: bool = False,
) -> list[str]:
    """Statements writing the staging table into the metrics table, touching only rows whose
    values differ (an unchanged customer costs a comparison, not a write), and recording in
    CHANGED_TABLE the customers aggregated (scoped) or whose row changed or is new (full).

    One join of the staging table with the metrics table finds both the rows that differ,
    with their staged values, and the customers without a row (crm_metrics_diff.missing); the
    update and the insert read only those rows (a full refresh writing 39k rows of 1M: 3.3 s
    -> 0.9 s).
    `payback_from` (a full refresh on PostgreSQL): the table of (customer_id, days) whose days
    replace the staging table's payback_days, joined here rather than copied into it; the
    staging table then carries its comparison with the stored rows (_stage_sql
    compare_stored), so that only the payback days are compared here.
    `tiles` (a scoped refresh; _tiles_sql over alias s): the value decile and suggested effort
    are written with the rest, by those expressions.
    `old_rows` (_old_rows): where the stored rows are compared from.
    `stored_payback` (a full concurrent refresh, whose payback days come later: _payback_moves):
    the staging table carries its comparison, and each row keeps its stored payback days.
    """
    table = CustomerMetrics._meta.db_table
    cols = ", ".join(_STAGE_COLUMNS)
    sets = ", ".join(f"{c} = s.{c}" for c in _STAGE_COLUMNS)
    staged = ", ".join(f"s.{c}" for c in _STAGE_COLUMNS)
    recorded = STAGE_TABLE if scoped else "crm_metrics_diff"
    if payback_from or stored_payback:  # the staging table carries its comparison
        days, joined, differs = "s.old_payback", "", ""  # (_stage_sql compare_stored)
        if payback_from:
            days = "pb.days"
            joined = f" LEFT JOIN {payback_from} pb ON pb.customer_id = s.customer_id"
            differs = f" OR {_distinct('pb.days', 's.old_payback')}"
        columns = ", ".join(
            f"{days} AS payback_days" if c == "payback_days" else f"s.{c}" for c in _STAGE_COLUMNS
        )
        diff = (
            f"CREATE TEMPORARY TABLE crm_metrics_diff AS SELECT s.customer_id, {columns}, "  # noqa: S608
            "CASE WHEN s.old_state = 0 THEN 1 ELSE 0 END AS missing "
            f"FROM {STAGE_TABLE} s{joined} WHERE s.old_state <> 1{differs}"
        )
    else:
        tiled, tiles_differ = "", ""
        if tiles:
            cols += ", value_decile, suggested_effort"
            sets += ", value_decile = s.value_decile, suggested_effort = s.suggested_effort"
            tiled = f"{tiles['decile']} AS value_decile, {tiles['effort']} AS suggested_effort, "
            tiles_differ = " OR " + _distinct(
                "(m.value_decile, m.suggested_effort)", f"({tiles['decile']}, {tiles['effort']})"
            )
        old, key = old_rows or _old_rows(None)
        diff = (
            f"CREATE TEMPORARY TABLE crm_metrics_diff AS SELECT s.customer_id, {staged}, "  # noqa: S608
            f"{tiled}CASE WHEN m.customer_id IS NULL THEN 1 ELSE 0 END AS missing "
            f"FROM {STAGE_TABLE} s LEFT JOIN {old} m ON m.{key} = s.customer_id "
            f"WHERE m.customer_id IS NULL OR {_differs('m', 's', _STAGE_COLUMNS)}{tiles_differ}"
        )
        if tiles:
            staged += ", s.value_decile, s.suggested_effort"
    return [
        "DROP TABLE IF EXISTS crm_metrics_diff",
        diff,
        f"INSERT INTO {CHANGED_TABLE} SELECT customer_id FROM {recorded}",  # noqa: S608
        f"UPDATE {table} SET {sets}, refreshed_at = %(now)s "  # noqa: S608
        f"FROM crm_metrics_diff s WHERE s.customer_id = {table}.customer_id AND s.missing = 0",
        f"INSERT INTO {table} (customer_id, {cols}, refreshed_at) "  # noqa: S608
        f"SELECT s.customer_id, {staged}, %(now)s FROM crm_metrics_diff s WHERE s.missing = 1",
        f"DROP TABLE IF EXISTS {NEW_TABLE}",
        f"CREATE TEMPORARY TABLE {NEW_TABLE} AS "  # noqa: S608
        "SELECT customer_id FROM crm_metrics_diff WHERE missing = 1",
        "DROP TABLE crm_metrics_diff",
    ]


# --- images of metrics rows before a run's writes -------------------------------------------
# A caller that keeps figures aggregated over the metrics table (segments' ROI sums) can update
# them from the rows a run changed instead of aggregating every row again: it passes the name
# of a table made by before_images_create, and every statement of the run that writes
# aggregated columns (metrics values, status, the bucket copy) first records the rows it is
# about to write. The first image of a row is kept: the row as it was before the run.


def before_images_create(cursor, name: str) -> None:
    """Create temporary table `name` (dropped at commit) for images of metrics rows: the
    customer (image_of), whether the row existed (present) and every metrics column. Empty
    and without its key: metrics_refresh, the first to record, inserts the images of the
    customers it stages (distinct) as they come, then adds the key (before_images_keyed) that
    every later recording checks. A plain insert and the key built once: 35.6k images
    190-240 -> 144-167 ms, against inserting each through the key with ON CONFLICT."""
    table = CustomerMetrics._meta.db_table
    cursor.execute(f"DROP TABLE IF EXISTS {name}")
    cursor.execute(
        f"CREATE TEMPORARY TABLE {name} ON COMMIT DROP AS SELECT m.customer_id AS image_of, "  # noqa: S608
        f"TRUE AS present, m.* FROM {table} m WITH NO DATA"
    )


def before_images_keyed(cursor, name: str) -> None:
    """Add its key to images table `name` after its first recording (before_images_create)."""
    cursor.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (image_of)")


def before_images_sql(name: str, keys_sql: str, *, first: bool = False) -> str:
    """SQL recording into images table `name` the metrics row of each customer_id that the
    query `keys_sql` selects, as it is now (present false: no row yet), where no image was
    recorded yet; `first`: the table's first recording, of distinct customers, into the table
    without its key. PostgreSQL only."""
    table = CustomerMetrics._meta.db_table
    return (
        f"INSERT INTO {name} SELECT k.customer_id, m.customer_id IS NOT NULL, m.* "  # noqa: S608
        f"FROM ({keys_sql}) k LEFT JOIN {table} m ON m.customer_id = k.customer_id"
        + ("" if first else " ON CONFLICT (image_of) DO NOTHING")
    )


STATUS_TABLE = "crm_metrics_status"  # (customer_id, status) to copy to Customer


def _status_moves_sql() -> str:
    """SELECT of the metrics rows whose status the date moves (the status pass's rows)."""
    table = CustomerMetrics._meta.db_table
    return f"SELECT customer_id FROM {table} WHERE status <> {status_sql()}"  # noqa: S608


def _status_pass(
    cursor, params: dict, *, before_images: str | None = None, candidates: list | None = None
) -> None:
    """Move the status of every metrics row whose status the date changes (one UPDATE of the
    rows where it differs) and record those customers in CHANGED_TABLE, and with their new
    status in STATUS_TABLE (and their rows as they were in `before_images`, if given).
    `candidates` (PostgreSQL): the customers among whom those rows are, found beforehand
    (_status_moves_sql over the rows as the refresh found them: the rows it wrote since have
    the status of the date already); only they are looked at, by key.

    PostgreSQL: one statement (data-modifying CTEs). SQLite: record, update, then copy."""
    table = CustomerMetrics._meta.db_table
    set_sql, where = f"status = {status_sql()}", f"status <> {status_sql()}"
    if candidates is not None and _pg():
        where += " AND customer_id = ANY(%(status_candidates)s)"
        params = {**params, "status_candidates": [row[0] for row in candidates]}
    if _pg() and before_images:  # the rows read once, kept, imaged, then updated by key
        cursor.execute("DROP TABLE IF EXISTS crm_metrics_touch")
        # Without candidates, in parallel workers: the planner expects most rows to match (it
        # cannot see into the CASE) and would not pass them from workers at
        # parallel_tuple_cost 0.1; a few thousand of a million do (1M rows: 0.36 -> 0.20 s).
        with planner_setting(cursor, "parallel_tuple_cost", "0.001"):
            cursor.execute(
                f"CREATE TEMPORARY TABLE crm_metrics_touch AS SELECT * FROM {table} "  # noqa: S608
                f"WHERE {where}",
                params,
            )
        # Its statistics make the update below look its rows up by key: the planner expects
        # most rows from the WHERE above, and would hash the whole metrics table again.
        cursor.execute("ANALYZE crm_metrics_touch")
        cursor.execute(
            f"INSERT INTO {before_images} SELECT customer_id, TRUE, t.* "  # noqa: S608
            "FROM crm_metrics_touch t ON CONFLICT (image_of) DO NOTHING"
        )
        cursor.execute(
            f"WITH u AS (UPDATE {table} SET status = {status_sql('t')} "  # noqa: S608
            f"FROM crm_metrics_touch t WHERE t.customer_id = {table}.customer_id "
            f"RETURNING {table}.customer_id, {table}.status), "
            f"c AS (INSERT INTO {CHANGED_TABLE} SELECT customer_id FROM u) "
            f"INSERT INTO {STATUS_TABLE} SELECT customer_id, status FROM u",
            params,
        )
        cursor.execute("DROP TABLE crm_metrics_touch")
        return
    if _pg():
        cursor.execute(
            f"WITH u AS (UPDATE {table} SET {set_sql} WHERE {where} "  # noqa: S608
            f"RETURNING {table}.customer_id, {table}.status), "
            f"c AS (INSERT INTO {CHANGED_TABLE} SELECT customer_id FROM u) "
            f"INSERT INTO {STATUS_TABLE} SELECT customer_id, status FROM u",
            params,
        )
        return
    cursor.execute("DROP TABLE IF EXISTS crm_metrics_touch")
    cursor.execute(
        f"CREATE TEMPORARY TABLE crm_metrics_touch AS SELECT customer_id "  # noqa: S608
        f"FROM {table} WHERE {where}",
        params,
    )
    cursor.execute(
        f"UPDATE {table} SET {set_sql} WHERE {where} AND customer_id IN "  # noqa: S608
        "(SELECT customer_id FROM crm_metrics_touch)",
        params,
    )
    cursor.execute(f"INSERT INTO {CHANGED_TABLE} SELECT customer_id FROM crm_metrics_touch")  # noqa: S608
    cursor.execute(
        f"INSERT INTO {STATUS_TABLE} SELECT t.customer_id, m.status "  # noqa: S608
        f"FROM crm_metrics_touch t JOIN {table} m ON m.customer_id = t.customer_id"
    )
    cursor.execute("DROP TABLE crm_metrics_touch")


# Global ranks (domain.md): value decile = NTILE(10) over lifetime contribution, descending;
# suggested effort = NTILE(10) over window minutes, ascending, among customers served at all.
# Ties go by customer id, in the same direction, so that each order is one index order.
# kind: (metrics column, sort value, rows ranked, descending)
RANKS = {
    "decile": ("value_decile", "contribution_lifetime", "TRUE", True),
    "effort": ("suggested_effort", "minutes_window", "minutes_window > 0", False),
}
RANKS_TABLE = "crm_metrics_ranks"
# Below this many ranked rows a full re-rank is cheaper than the repair's bookkeeping.
RANK_REPAIR_MIN_ROWS = 1000


def _tile_end(tile: str, n: str) -> str:
    """SQL: the position of the last row of NTILE(10) tile `tile` over `n` rows."""
    return f"({tile} * ({n} / 10) + CASE WHEN {tile} < {n} % 10 THEN {tile} ELSE {n} % 10 END)"


def _ranks_sql() -> str:
    """CREATE of a temporary table of the customers whose value decile or suggested effort
    changes (`changed`), with the new values (global NTILE ranks, one sort per rank), plus the
    last row of each of the first nine tiles (`d_end`, `e_end`): the rank boundaries."""
    table = CustomerMetrics._meta.db_table
    true = "TRUE" if _pg() else "1"
    return f"""
CREATE TEMPORARY TABLE {RANKS_TABLE} AS
SELECT customer_id, decile, effort, contribution_lifetime, minutes_window, changed, d_end, e_end
FROM (
    SELECT r.*,
        {_distinct("(value_decile, suggested_effort)", "(decile, effort)")} AS changed,
        (decile < 10 AND rn_d = {_tile_end("decile", "n_d")}) AS d_end,
        (effort < 10 AND rn_e = {_tile_end("effort", "n_e")}) AS e_end
    FROM (
        SELECT customer_id, contribution_lifetime, minutes_window, value_decile,
            suggested_effort,
            NTILE(10) OVER wd AS decile, ROW_NUMBER() OVER wd AS rn_d, COUNT(*) OVER () AS n_d,
            CASE WHEN minutes_window > 0 THEN NTILE(10) OVER we END AS effort,
            ROW_NUMBER() OVER we AS rn_e, COUNT(*) OVER wp AS n_e
        FROM {table}
        WINDOW wd AS (ORDER BY contribution_lifetime DESC, customer_id DESC),
            wp AS (PARTITION BY CASE WHEN minutes_window > 0 THEN 1 ELSE 0 END),
            we AS (wp ORDER BY minutes_window, customer_id)
    ) r
) x
WHERE changed = {true} OR d_end = {true} OR e_end = {true}
"""  # noqa: S608


def _ranks_walked(cursor) -> dict | None:
    """PostgreSQL: the rank boundaries of the rows as they are now, {kind: {tile: (value,
    customer_id)}} as _stored_boundaries gives them, found along each rank's index: the rows
    each rank counts, then for each of tiles 1-9 the row at its tile's end, OFFSET rows past
    the previous one (a walk over the index, no sort). None when a rank counts fewer than
    RANK_REPAIR_MIN_ROWS rows (the sort is cheaper then)."""
    table = CustomerMetrics._meta.db_table
    counted = ", ".join(f"COUNT(*) FILTER (WHERE {rank[2]})" for rank in RANKS.values())
    cursor.execute(f"SELECT {counted} FROM {table}")  # noqa: S608
    counts = cursor.fetchone()
    bounds = {}
    for (kind, (_column, value, ranked, desc)), n in zip(RANKS.items(), counts, strict=True):
        if n < RANK_REPAIR_MIN_ROWS:
            return None
        order, later = ("DESC", "<") if desc else ("ASC", ">")
        q, r = divmod(n, 10)
        bounds[kind], previous, at = {}, None, 0
        for tile in range(1, 10):
            end = tile * q + min(tile, r)  # the position of the tile's last row
            where, args = ranked, []
            if previous is not None:
                where += f" AND ({value}, customer_id) {later} (%s, %s)"
                args += list(previous)
            cursor.execute(
                f"SELECT {value}, customer_id FROM {table} WHERE {where} "  # noqa: S608
                f"ORDER BY {value} {order}, customer_id {order} LIMIT 1 OFFSET %s",
                [*args, end - at - 1],
            )
            found = cursor.fetchone()
            if found is None:
                return None
            previous, at = found, end
            bounds[kind][tile] = (found[0] if kind == "decile" else int(found[0]), found[1])
    return bounds


def _ranks_full(cursor) -> None:
    """Re-rank every customer, write the ranks that changed and the boundaries.

    PostgreSQL with enough rows: the boundaries of the rows as they are, moved from the stored
    ones (_boundaries_moved: a counting scan and short walks along the ranks' indexes) or,
    without those, walked from the first row (_ranks_walked), then one scan gives each row its
    tiles by them (_tiles_sql) and keeps those that differ: no sort (1M customers: 3.1-3.7 s
    with the two sorts below -> 0.83 s from stored boundaries). A full refresh thus
    reads the stored boundaries only as a starting point: every row gets its tiles again.
    Otherwise two sorts (NTILE); the first runs in parallel workers (1M rows alone: 4.1 s ->
    3.0 s). The planner charges as much for passing a row from a worker
    (parallel_tuple_cost, 0.1) as for sorting it, and so would sort or scan every row in one
    process; the statements run with 0.001."""
    table, bounds_table = CustomerMetrics._meta.db_table, RankBoundary._meta.db_table
    true = "TRUE" if _pg() else "1"
    cursor.execute(f"DROP TABLE IF EXISTS {RANKS_TABLE}")
    walked = None
    if _pg():
        stored = _stored_boundaries(cursor)
        walked = _boundaries_moved(cursor, stored) if stored else _ranks_walked(cursor)
    with planner_setting(cursor, "parallel_tuple_cost", "0.001"):
        if walked is None:
            cursor.execute(_ranks_sql())
        else:
            tiles, args = _tiles_sql(table, walked, "new")
            now = f"({tiles['decile']}, {tiles['effort']})"
            cursor.execute(
                f"CREATE TEMPORARY TABLE {RANKS_TABLE} AS "  # noqa: S608
                f"SELECT customer_id, {tiles['decile']} AS decile, {tiles['effort']} AS effort, "
                f"TRUE AS changed FROM {table} "
                f"WHERE {_distinct('(value_decile, suggested_effort)', now)}",
                args,
            )
    # Recorded: the customers whose decile moves (bucket rules read it, not the effort).
    cursor.execute(
        f"INSERT INTO {CHANGED_TABLE} SELECT r.customer_id FROM {RANKS_TABLE} r "  # noqa: S608
        f"JOIN {table} m ON m.customer_id = r.customer_id "
        f"WHERE r.changed = {true} AND {_distinct('m.value_decile', 'r.decile')}"
    )
    cursor.execute(
        f"UPDATE {table} SET value_decile = r.decile, suggested_effort = r.effort "  # noqa: S608
        f"FROM {RANKS_TABLE} r WHERE r.customer_id = {table}.customer_id AND r.changed = {true}"
    )
    if walked is None:
        cursor.execute(f"DELETE FROM {bounds_table}")  # noqa: S608
        for kind, tile, value, flag in (
            ("decile", "decile", "contribution_lifetime", "d_end"),
            ("effort", "effort", "minutes_window", "e_end"),
        ):
            cursor.execute(
                f"INSERT INTO {bounds_table} (kind, tile, value, customer_id) "  # noqa: S608
                f"SELECT %s, {tile}, {value}, customer_id FROM {RANKS_TABLE} "
                f"WHERE {flag} = {true}",
                [kind],
            )
    else:
        _boundaries_write(cursor, walked)
    cursor.execute(f"DROP TABLE {RANKS_TABLE}")


def _boundaries_write(cursor, bounds: dict) -> None:
    """Store `bounds` ({kind: {tile: (value, customer_id)}}) as the rank boundaries."""
    cursor.execute(f"DELETE FROM {RankBoundary._meta.db_table}")  # noqa: S608
    cursor.executemany(
        f"INSERT INTO {RankBoundary._meta.db_table} (kind, tile, value, customer_id) "  # noqa: S608
        "VALUES (%s, %s, %s, %s)",
        [
            (kind, tile, value, customer_id)
            for kind, tiles in bounds.items()
            for tile, (value, customer_id) in tiles.items()
        ],
    )


def _stored_boundaries(cursor) -> dict | None:
    """The tile boundaries the last refresh stored, {kind: {tile: (value, customer_id)}} for
    tiles 1-9 of each rank, or None when they are not all there."""
    cursor.execute(f"SELECT kind, tile, value, customer_id FROM {RankBoundary._meta.db_table}")  # noqa: S608
    bounds = {kind: {} for kind in RANKS}
    for kind, tile, value, customer_id in cursor.fetchall():
        if kind in bounds:
            bounds[kind][tile] = (value if kind == "decile" else int(value), customer_id)
    if any(sorted(tiles) != list(range(1, 10)) for tiles in bounds.values()):
        return None
    return bounds


def _tiles_sql(alias: str, bounds: dict, prefix: str) -> tuple[dict, dict]:
    """SQL of each rank's tile of row `alias` by boundaries `bounds` (as _stored_boundaries
    gives), NULL where the rank does not count the row, and its parameters (named `prefix`_)."""
    sql, args = {}, {}
    for kind, (_column, value, ranked, desc) in RANKS.items():
        key, later = f"({alias}.{value}, {alias}.customer_id)", "<" if desc else ">"
        after = []
        for tile in range(1, 10):
            name = f"{prefix}_{kind}_{tile}"
            args[f"{name}_v"], args[f"{name}_id"] = bounds[kind][tile]
            after.append(f"CASE WHEN {key} {later} (%({name}_v)s, %({name}_id)s) THEN 1 ELSE 0 END")
        qualified = ranked.replace(value, f"{alias}.{value}")
        sql[kind] = f"CASE WHEN {qualified} THEN 1 + {' + '.join(after)} END"
    return sql, args


def _boundaries_moved(
    cursor, old: dict, *, before_images: str | None = None, ranked_before: dict | None = None
) -> dict | None:
    """The rank boundaries of the rows as they are now, from boundaries `old` that held at some
    earlier time (_stored_boundaries): one scan counts the rows each rank counts and those up
    to each old boundary (or, with `before_images` and `ranked_before`, see _ranks_repair,
    those counts are moved by the imaged rows alone); each new boundary is then a short walk
    along the rank's index from the old one (as many rows as it moved). None when a rank
    counts fewer than RANK_REPAIR_MIN_ROWS rows or a walk runs off the end."""
    table = CustomerMetrics._meta.db_table
    # The rows ranked and the rows up to each old boundary: counted over every row, or, from
    # the counts when the boundaries were stored and the images of the rows written since,
    # moved by those rows alone (+1 as they are, -1 as they were).
    moving = before_images is not None and ranked_before is not None
    one = "sign" if moving else "1"
    counts, args = ["SUM(sign)" if moving else "COUNT(*)"], {}
    for kind, (_column, value, ranked, desc) in RANKS.items():
        counts.append(f"SUM(CASE WHEN {ranked} THEN {one} ELSE 0 END)")
        for tile in range(1, 10):
            name = f"{kind}_{tile}"
            args[f"{name}_v"], args[f"{name}_id"] = old[kind][tile]
            up_to = ">=" if desc else "<="
            counts.append(
                f"SUM(CASE WHEN {ranked} AND ({value}, customer_id) {up_to} "
                f"(%({name}_v)s, %({name}_id)s) THEN {one} ELSE 0 END)"
            )
    source = table
    if moving:
        keys = "contribution_lifetime, minutes_window, customer_id"
        source = (
            f"(SELECT {keys}, -1 AS sign FROM {before_images} WHERE present "  # noqa: S608
            "UNION ALL SELECT m.contribution_lifetime, m.minutes_window, m.customer_id, 1 "
            f"FROM {before_images} b JOIN {table} m ON m.customer_id = b.image_of) AS d"
        )
    # With images, one lookup by key per image, not a hash of a scan of every row (39k images
    # 0.13-0.18 -> 0.49 s hashed).
    with key_lookups(cursor) if moving else contextlib.nullcontext():
        cursor.execute(f"SELECT {', '.join(counts)} FROM {source}", args)  # noqa: S608
        row = [int(x or 0) for x in cursor.fetchone()]
    if moving:  # a stored boundary is the last row of its tile: at its tile's end
        base = [ranked_before["decile"]]
        for kind in RANKS:
            n = ranked_before[kind]
            q, r = divmod(n, 10)
            base += [n] + [tile * q + min(tile, r) for tile in range(1, 10)]
        row = [was + change for was, change in zip(base, row, strict=True)]
    if row[0] < RANK_REPAIR_MIN_ROWS:
        return None
    new, seen = {kind: {} for kind in RANKS}, 1
    for kind, (_column, value, ranked, desc) in RANKS.items():
        n, positions = row[seen], row[seen + 1 : seen + 10]
        seen += 10
        if n < RANK_REPAIR_MIN_ROWS:
            return None
        q, r = divmod(n, 10)
        for tile, position in zip(range(1, 10), positions, strict=True):
            moved = tile * q + min(tile, r) - position
            if moved > 0:  # the boundary moved later: `moved` rows past the old one
                compare, order, offset = (
                    ("<", "DESC", moved - 1) if desc else (">", "ASC", moved - 1)
                )
            else:  # earlier or not at all: back from the last row up to the old one
                compare, order, offset = (">=", "ASC", -moved) if desc else ("<=", "DESC", -moved)
            cursor.execute(
                f"SELECT {value}, customer_id FROM {table} WHERE {ranked} "  # noqa: S608
                f"AND ({value}, customer_id) {compare} (%s, %s) "
                f"ORDER BY {value} {order}, customer_id {order} LIMIT 1 OFFSET %s",
                [*old[kind][tile], offset],
            )
            found = cursor.fetchone()
            if found is None:
                return None
            new[kind][tile] = (found[0], found[1])
    return new


def _ranks_repair(
    cursor,
    *,
    before_images: str | None = None,
    ranked_before: dict | None = None,
    tiled_by: dict | None = None,
) -> bool:
    """Move the global ranks after an incremental refresh without sorting every customer.

    From the boundaries the last refresh stored (the sort key of the last row of tiles 1-9),
    one scan counts the rows ranked and the rows up to each old boundary (or, given the images
    of the rows written since, `before_images`, and the rows each rank counted when the
    boundaries were stored, `ranked_before` {"decile": n, "effort": n}, those counts are moved
    by the imaged rows alone); the new boundary is
    then a short walk along the rank's index from the old one (as many rows as the boundary
    moved). Only rows between an old and a new boundary, and the customers aggregated again,
    can change tile: those are updated. Returns False (nothing done) when there are no usable
    boundaries or few rows; the caller then re-ranks everyone.
    """
    old = tiled_by if tiled_by is not None else _stored_boundaries(cursor)
    if old is None:
        return False
    new = _boundaries_moved(cursor, old, before_images=before_images, ranked_before=ranked_before)
    if new is None:
        return False
    table = CustomerMetrics._meta.db_table
    tiles, args = _tiles_sql(table, new, "new")  # each row's tile by the new boundaries
    columns, tiles_sql, spans = [], [tiles[kind] for kind in RANKS], {kind: [] for kind in RANKS}
    for kind, (column, value, ranked, _desc) in RANKS.items():
        key = f"({table}.{value}, {table}.customer_id)"
        for tile in range(1, 10):
            name = f"{kind}_{tile}"
            low, high = sorted([old[kind][tile], new[kind][tile]])
            args[f"{name}_lo_v"], args[f"{name}_lo_id"] = low
            args[f"{name}_hi_v"], args[f"{name}_hi_id"] = high
            # The plain range on the value lets the planner estimate the span from its
            # statistics (and read it through the rank's index); the row comparisons cut it.
            spans[kind].append(
                f"({ranked} AND {table}.{value} >= %({name}_lo_v)s "
                f"AND {table}.{value} <= %({name}_hi_v)s "
                f"AND {key} >= (%({name}_lo_v)s, %({name}_lo_id)s) "
                f"AND {key} <= (%({name}_hi_v)s, %({name}_hi_id)s))"
            )
        columns.append(f"{table}.{column}")
    set_sql = ", ".join(
        f"{column.split('.')[1]} = {tile}" for column, tile in zip(columns, tiles_sql, strict=True)
    )
    changes = _distinct(f"({', '.join(columns)})", f"({', '.join(tiles_sql)})")
    # The customers aggregated again (already in CHANGED_TABLE): any tile. Unless the write
    # gave them their tiles by the old boundaries (`tiled_by`): then every row has its tile by
    # those, and only rows between an old and a new boundary can be in another tile now.
    if tiled_by is None:
        cursor.execute(
            f"UPDATE {table} SET {set_sql} "  # noqa: S608
            f"FROM (SELECT DISTINCT customer_id FROM {CHANGED_TABLE}) ch "
            f"WHERE ch.customer_id = {table}.customer_id AND {changes}",
            args,
        )
    # Everyone else: only between an old and a new boundary. Those whose decile moves are
    # recorded (bucket rules read it; suggested effort is no rule field). A row whose decile
    # moves lies in a decile span, so the rows of every span can be recorded alike.
    in_span = f"({' OR '.join(spans['decile'] + spans['effort'])}) AND {changes}"
    if _pg():  # one pass: the old decile travels with the update
        cursor.execute(
            f"WITH moved AS (SELECT customer_id, value_decile AS was FROM {table} "  # noqa: S608
            f"WHERE {in_span}), u AS (UPDATE {table} SET {set_sql} FROM moved "
            f"WHERE moved.customer_id = {table}.customer_id "
            f"RETURNING {table}.customer_id, moved.was, {table}.value_decile) "
            f"INSERT INTO {CHANGED_TABLE} SELECT customer_id FROM u "
            f"WHERE {_distinct('was', 'value_decile')}",
            args,
        )
    else:
        cursor.execute(
            f"INSERT INTO {CHANGED_TABLE} SELECT customer_id FROM {table} "  # noqa: S608
            f"WHERE {in_span} AND {_distinct(columns[0], tiles_sql[0])}",
            args,
        )
        cursor.execute(f"UPDATE {table} SET {set_sql} WHERE {in_span}", args)  # noqa: S608
    _boundaries_write(cursor, new)
    return True


def _cohort_events_sql(*, customers: str, cohort: str, sign: str, extra: str = "") -> str:
    """SQL: (cohort, month, units) rows of every order and interaction of the customers of
    subquery `customers` (columns customer_id and `cohort`), multiplied by `sign`."""
    order, interaction = Order._meta.db_table, Interaction._meta.db_table
    o_extra = extra.format(alias="o")
    i_extra = extra.format(alias="i")
    return (
        f"SELECT x.{cohort} AS cohort, {_month_start(local_date('o.placed_at'))} AS month, "  # noqa: S608
        f"{sign} * {order_units()} AS units "
        f"FROM ({customers}) x JOIN {order} o ON o.customer_id = x.customer_id "
        f"WHERE x.{cohort} IS NOT NULL{o_extra} "
        "UNION ALL "
        f"SELECT x.{cohort}, {_month_start(local_date('i.occurred_at'))}, "
        f"{sign} * {interaction_units()} "
        f"FROM ({customers}) x JOIN {interaction} i ON i.customer_id = x.customer_id "
        f"JOIN {staff_cents_sql()} u ON u.id = i.staff_id WHERE x.{cohort} IS NOT NULL{i_extra}"
    )


def _cohorts_sql() -> str:
    """SELECT of the CohortContribution rows (cohort, month, units) from every order and
    interaction, the customers' cohorts from the metrics table: a plain SELECT, unlike INSERT
    ... SELECT, may run in parallel workers (about twice as fast on two cores), and its result
    is small."""
    table = CustomerMetrics._meta.db_table
    customers = f"SELECT customer_id, acquisition_month FROM {table}"  # noqa: S608
    events = _cohort_events_sql(customers=customers, cohort="acquisition_month", sign="1")
    return f"SELECT cohort, month, SUM(units) FROM ({events}) e GROUP BY cohort, month"  # noqa: S608


def _cohorts_rebuild(cursor, params: dict, *, rows: list | None = None) -> None:
    """Recompute CohortContribution from every order and interaction (after the metrics write),
    or write `rows` computed by a second connection (_stage_with_side_queries)."""
    cells = CohortContribution._meta.db_table
    if rows is None:
        cursor.execute(_cohorts_sql(), params)
        rows = cursor.fetchall()
    cursor.execute(f"DELETE FROM {cells}")  # noqa: S608
    if rows:
        cursor.executemany(
            f"INSERT INTO {cells} (cohort, month, units) VALUES (%s, %s, %s)",  # noqa: S608
            rows,
        )


MOVED_TABLE = "crm_metrics_moved"


def _old_rows(before_images: str | None) -> tuple[str, str]:
    """(table, key column) holding the stored metrics rows of the customers in the staging
    table: the images of those rows where recorded (a small temporary table, joined with
    the staging table without one lookup a customer into the metrics table: 35k customers,
    the write's comparison 0.11 -> 0.06 s, the cohort moves' 0.06 -> 0.01 s), else the
    metrics table. A customer without a row has an image with NULL columns (present false),
    as a LEFT JOIN with the metrics table gives."""
    if before_images:
        return before_images, "image_of"
    return CustomerMetrics._meta.db_table, "customer_id"


def _cohorts_delta(cursor, params: dict, *, old_rows: tuple[str, str] | None = None) -> None:
    """Add to CohortContribution what changed since the watermarks: customers whose cohort
    moved (a small temporary table) take all their events out of the old cohort (those already
    counted: ids up to the watermarks) and into the new one; everyone else in the staging table
    adds the orders and interactions above the watermarks (an index range on the ids). Runs
    before the metrics write: old cohorts are read from the metrics table, new ones from the
    staging table (or their images: `old_rows`, _old_rows)."""
    cells = CohortContribution._meta.db_table
    table, key = old_rows or _old_rows(None)
    cursor.execute(f"DROP TABLE IF EXISTS {MOVED_TABLE}")
    cursor.execute(
        f"CREATE TEMPORARY TABLE {MOVED_TABLE} AS SELECT s.customer_id, "  # noqa: S608
        f"m.acquisition_month AS old_cohort, s.acquisition_month AS new_cohort "
        f"FROM {STAGE_TABLE} s LEFT JOIN {table} m ON m.{key} = s.customer_id "
        f"WHERE {_differs('m', 's', ['acquisition_month'])}"
    )
    if _pg():
        cursor.execute(f"ANALYZE {MOVED_TABLE}")
    moved = f"SELECT * FROM {MOVED_TABLE}"  # noqa: S608
    stayed = (
        f"SELECT s.customer_id, s.acquisition_month FROM {STAGE_TABLE} s "  # noqa: S608
        f"WHERE NOT EXISTS (SELECT 1 FROM {MOVED_TABLE} x WHERE x.customer_id = s.customer_id)"
    )
    old = " AND {alias}.id <= %(max_" + "{alias}" + ")s"
    new = " AND {alias}.id > %(max_" + "{alias}" + ")s"
    parts = [
        _cohort_events_sql(customers=moved, cohort="old_cohort", sign="-1", extra=old),
        _cohort_events_sql(customers=moved, cohort="new_cohort", sign="1"),
        _cohort_events_sql(customers=stayed, cohort="acquisition_month", sign="1", extra=new),
    ]
    events = " UNION ALL ".join(parts)
    cursor.execute(
        f"INSERT INTO {cells} (cohort, month, units) SELECT cohort, month, SUM(units) "  # noqa: S608
        f"FROM ({events}) e GROUP BY cohort, month "
        "ON CONFLICT (cohort, month) DO UPDATE SET units = "
        f"{cells}.units + excluded.units",
        params,
    )
    cursor.execute(f"DROP TABLE {MOVED_TABLE}")


def _copy_status_sql() -> str:
    """UPDATE copying the status into Customer from STATUS_TABLE (the customers aggregated
    whose status differed from the customer's when staged, and those whose status the date
    moved; one index lookup each), where it still differs."""
    customer = Customer._meta.db_table
    return (
        f"UPDATE {customer} AS c SET status = m.status FROM {STATUS_TABLE} m "  # noqa: S608
        "WHERE m.customer_id = c.id AND c.status <> m.status"
    )


def _scope_statements(ids: list[int]) -> list[tuple[str, list | None]]:
    """Statements filling SCOPE_TABLE with `ids` (one INSERT; PostgreSQL: an array, then
    ANALYZE)."""
    create = f"CREATE TEMPORARY TABLE {SCOPE_TABLE} (customer_id bigint PRIMARY KEY)"
    if _pg():
        return [
            (create, None),
            (f"INSERT INTO {SCOPE_TABLE} SELECT unnest(%s::bigint[])", [ids]),  # noqa: S608
            (f"ANALYZE {SCOPE_TABLE}", None),
        ]
    insert = f"INSERT INTO {SCOPE_TABLE} SELECT value FROM json_each(%s)"  # noqa: S608
    return [(create, None), (insert, [json.dumps(ids)])]


# The second connection's settings (statements), as the job's own (segments.jobs). Its tables
# have fixed names: concurrent refreshes come from the job only, which never runs twice at once.
SIDE_SETTINGS = [
    (f"SET {setting}", None)
    for setting in ("work_mem = '256MB'", "jit = off", "random_page_cost = 1.1")
]
SIDE_STAGE_TABLE = "crm_metrics_stage_side"  # unlogged: written by a second connection
SIDE_STAGE_MIN_CUSTOMERS = 4000  # below this a second connection does not repay its start


def _stage_halves(
    cursor, params: dict, ids: list[int], *, keep_payback: bool, staff_array: bool
) -> None:
    """Scoped refresh of many customers on PostgreSQL, outside any outer transaction: the
    second connection stages the upper part of `ids` (47 %) into SIDE_STAGE_TABLE while this
    one stages the rest; then the staging table takes in the other part. Each customer is a
    few index lookups in one process (about 65 us), so on two cores the parts take about half
    the time."""
    # A little more than half here: the other connection starts later (its connection and
    # settings) and writes a shared table, which this one then copies (the wait for it: 70 ->
    # about 10 ms at 35k customers).
    middle = len(ids) * 53 // 100
    stage = _stage_sql(scoped=True, keep_payback=keep_payback, staff_array=staff_array)
    side = SIDE_STAGE_TABLE
    statements = list(SIDE_SETTINGS)
    statements += _scope_statements(ids[middle:])
    statements += [
        (f"DROP TABLE IF EXISTS {side}", None),
        (f"CREATE UNLOGGED TABLE {side} AS {stage}", params),
    ]
    with side_query(statements) as other_half:
        for sql, args in _scope_statements(ids[:middle]):
            cursor.execute(sql, args)
        cursor.execute(f"CREATE TEMPORARY TABLE {STAGE_TABLE} AS {stage}", params)
        other_half.result()
    cursor.execute(f"INSERT INTO {STAGE_TABLE} SELECT * FROM {side}")  # noqa: S608
    cursor.execute(f"DROP TABLE {side}")


def _stage_full(
    cursor,
    params: dict,
    *,
    staff_array: bool,
    beside: bool = False,
    ranged: bool = False,
    changed_only: bool = False,
) -> None:
    """The staging table of a full refresh (_stage_sql): on PostgreSQL with `staff_array`, its
    joins with the customers are merge joins, pinned. Each event table's aggregate comes out in
    customer order, as the customers and the stored metrics are read, so nothing is hashed.
    The planner's estimate of the customers with orders or interactions comes from a sample,
    and for event tables stored in customer order it is 5-10 times too low (ANALYZE at 1M
    customers: 86k and 191k, against 964k and 930k). From that estimate it hashes every
    customer, with its stored metrics, to probe with the orders' aggregate: 17.1 s against
    12.9 s pinned.

    JIT compilation is on for this statement alone (the job's connections run without it):
    its aggregates evaluate some forty expressions per order or interaction, which compiled
    code does faster than the time compiling takes (1M customers, psql, in turns: 12.8-13.6 ->
    11.8-12.4 s). The payback days and the cohort rows, measured the same way, gain nothing
    and 5 %, the bucket assignment nothing.

    `beside`: the second connection reads every event at the same time (the payback days), so
    the interactions are aggregated in this process alone, without parallel workers: with
    them, four processes shared the two cores (1M customers, psql, both statements side by
    side: staging 14.1-14.9 -> 11.4-13.4 s, payback days 13.6-14.7 -> 11.7-13.3 s).

    `ranged`: only the customers of ids %(stage_from)s up to %(stage_to)s (_stage_sql).
    `changed_only`: only the rows to write (_stage_sql)."""
    stage = _stage_sql(
        scoped=False,
        staff_array=staff_array,
        compare_stored=_pg(),
        ranged=ranged,
        changed_only=changed_only,
    )
    with contextlib.ExitStack() as settings:
        for name, value in _stage_settings(staff_array=staff_array, beside=beside):
            settings.enter_context(planner_setting(cursor, name, value))
        cursor.execute(f"CREATE TEMPORARY TABLE {STAGE_TABLE} AS {stage}", params)


SIDE_PAYBACK_TABLE = "crm_metrics_payback_side"  # unlogged: written by a second connection
# (customer_id, old_days, new_days): the payback days written after the caller's `meanwhile`
PAYBACK_MOVED_TABLE = "crm_metrics_payback_moved"
SIDE_MOVES_TABLE = "crm_metrics_moves_side"  # unlogged: the payback days that move
# The share of a full refresh's customers (the highest ids) that the second connection stages
# before it computes every payback day and cohort cell; this connection stages the rest, then
# writes the metrics and runs the caller's `meanwhile` before it needs the payback days. At 1M
# customers in the job (both cores busy), with 9 %: this connection's staging 8.9-9.4 s for the
# rest, then 5-6 s of writes, ranks, memberships and sums; the second one's share 1.2-1.3 s,
# then the payback days and cohort cells 10.5-11 s, the dips and the payback days that move
# 0.9 s: it ended 1.5-2.5 s before this one. With 18 % the two ended together in profiles (full
# runs of 14.7 and 15.7 s against 15.0 and 16.4 s, in turns), with 22 % the second one last;
# after a day of changes (the benchmark's case) it also ended last with 18 % (its share took
# 2.5 s beside this connection's staging, its pass 11.9 s): 16 %. Once the membership writes
# looked their rows up by key (2026-12-07, about 0.5 s less here), the second connection ended
# last by 0.8-1.3 s with 16 %; its share costs about 0.13 s a percent, this one's 0.10 s, so the
# two meet near 11 % (profiles: 13.1-13.3 s, from 15.1-15.3 s with 16 %).
SIDE_STAGE_SHARE = 0.11


def _stage_settings(*, staff_array: bool, beside: bool) -> list[tuple[str, str]]:
    """(setting, value) pairs for a full refresh's staging statement (_stage_full)."""
    pairs = [("jit", "on")]
    if beside:
        pairs.append(("max_parallel_workers_per_gather", "0"))
    # Without the array, the staff join hashes the interactions: the plan is the planner's.
    if staff_array:
        pairs.append(("enable_hashjoin", "off"))
    return pairs


def _stage_with_side_queries(
    cursor, params: dict, sides: contextlib.ExitStack, *, staff_array: bool
) -> tuple[SideQuery, int]:
    """Full refresh on PostgreSQL, outside any outer transaction: the staging table is shared
    with a second connection, which stages the customers with the highest ids
    (SIDE_STAGE_SHARE) into SIDE_STAGE_TABLE while this one stages the others; this one then
    takes in those rows. Both keep only the rows to write (_stage_sql `changed_only`); the
    customers staged are counted beforehand, with the ids' range, and returned with the
    second connection. The second connection goes on with every customer's payback days
    and the cohort table's cells, in one pass over every order and interaction
    (_payback_cohorts_sql, _undated_cohorts_sql; _payback_dips_sql for the few customers
    whose running sum dips the day it first reaches the target), and the payback days that
    differ from the stored ones (SIDE_MOVES_TABLE: the rows as committed, which only the job
    writes, under the metrics table's lock, and which this connection's writes leave as they
    are until it commits). Meanwhile this one writes the metrics with their stored payback
    days (_write_sql `stored_payback`), statuses, ranks and the caller's `meanwhile`, then
    moves the payback days (_payback_moves) and writes the cohort cells that result() returns.

    Before, the payback days alone on the second connection (10-11 s), which then shared the
    cohort cells in twenty ranges with this one (7-7.6 s in all), and this connection's staging
    (11.6 s) came before everything it wrote: full run 19.3 s at 1M customers in a profile,
    14.5-15.8 s after the fourteenth round of bench/RESULTS.md, 14.7-15.7 s after the fifteenth
    on a slower hour of the machine (on which the code of the fourteenth took 15-16.7 s).

    A first full run (no stored metrics rows) moves every customer's payback days after the
    insert: one more write of the rows that have them, once."""
    customer = Customer._meta.db_table
    cursor.execute(f"SELECT MIN(id), MAX(id), COUNT(*) FROM {customer}")  # noqa: S608
    low, high, customers = cursor.fetchone()
    low, high = low or 0, (high or 0) + 1
    middle = high - int((high - low) * SIDE_STAGE_SHARE)
    stage = _stage_sql(
        scoped=False, staff_array=staff_array, compare_stored=True, ranged=True, changed_only=True
    )
    table = CustomerMetrics._meta.db_table
    statements = list(SIDE_SETTINGS)
    statements += [
        ("SELECT set_config(%s, %s, false)", [name, value])
        for name, value in _stage_settings(staff_array=staff_array, beside=True)
    ]
    statements += [
        (f"DROP TABLE IF EXISTS {SIDE_STAGE_TABLE}", None),
        (
            f"CREATE UNLOGGED TABLE {SIDE_STAGE_TABLE} AS {stage}",
            {**params, "stage_from": middle, "stage_to": high},
        ),
    ]
    staged = len(statements) - 1
    # The payback days and cohort cells with JIT, which repays its compile time there
    # (13.9 -> 11.3-11.6 s at 1M customers).
    statements += [
        ("RESET enable_hashjoin", None),
        (f"DROP TABLE IF EXISTS {SIDE_PAYBACK_TABLE}", None),
        (
            f"CREATE UNLOGGED TABLE {SIDE_PAYBACK_TABLE} AS "
            + _payback_cohorts_sql(staff_array=staff_array),
            params,
        ),
        ("SET jit = off", None),
        *[(sql, params) for sql in _payback_dips_sql(SIDE_PAYBACK_TABLE, staff_array=staff_array)],
        # A merge join with the metrics table's key, the payback rows sorted (they come out
        # of the pass in customer order): 0.88 -> 0.65 s at 1M customers, against hashing it.
        ("SET enable_hashjoin = off", None),
        (f"DROP TABLE IF EXISTS {SIDE_MOVES_TABLE}", None),
        (
            f"CREATE UNLOGGED TABLE {SIDE_MOVES_TABLE} AS "  # noqa: S608
            "SELECT COALESCE(m.customer_id, p.customer_id) AS customer_id, p.days "
            f"FROM {table} m FULL JOIN (SELECT customer_id, days FROM {SIDE_PAYBACK_TABLE} "
            "WHERE customer_id IS NOT NULL) p ON p.customer_id = m.customer_id "
            f"WHERE {_distinct('m.payback_days', 'p.days')}",
            None,
        ),
        (f"ANALYZE {SIDE_MOVES_TABLE}", None),
        (
            "SELECT cohort, month, SUM(units) FROM ("  # noqa: S608
            f"SELECT cohort, CAST(month AS date) AS month, units FROM {SIDE_PAYBACK_TABLE} "
            f"WHERE customer_id IS NULL UNION ALL ({_undated_cohorts_sql(staff_array=staff_array)})"
            ") cells GROUP BY 1, 2 ORDER BY 1, 2",
            params,
        ),
    ]
    side = sides.enter_context(side_query(statements, milestone=staged))
    _stage_full(
        cursor,
        {**params, "stage_from": low, "stage_to": middle},
        staff_array=staff_array,
        beside=True,
        ranged=True,
        changed_only=True,
    )
    side.milestone_wait()
    cursor.execute(f"INSERT INTO {STAGE_TABLE} SELECT * FROM {SIDE_STAGE_TABLE}")  # noqa: S608
    cursor.execute(f"DROP TABLE {SIDE_STAGE_TABLE}")
    return side, customers


def _payback_moves(cursor, params: dict) -> None:
    """Write the payback days that the second connection found to differ from the stored ones
    (_stage_with_side_queries), first recording them with the days they replace in
    PAYBACK_MOVED_TABLE, record those customers as changed, drop its tables."""
    table = CustomerMetrics._meta.db_table
    cursor.execute(
        f"INSERT INTO {PAYBACK_MOVED_TABLE} SELECT p.customer_id, m.payback_days, p.days "  # noqa: S608
        f"FROM {SIDE_MOVES_TABLE} p JOIN {table} m ON m.customer_id = p.customer_id"
    )
    cursor.execute(
        f"UPDATE {table} SET payback_days = p.days, refreshed_at = %(now)s "  # noqa: S608
        f"FROM {SIDE_MOVES_TABLE} p WHERE p.customer_id = {table}.customer_id",
        params,
    )
    cursor.execute(f"INSERT INTO {CHANGED_TABLE} SELECT customer_id FROM {SIDE_MOVES_TABLE}")  # noqa: S608
    cursor.execute(f"DROP TABLE {SIDE_MOVES_TABLE}")
    cursor.execute(f"DROP TABLE {SIDE_PAYBACK_TABLE}")


def metrics_refresh(
    *,
    as_of: dt.date,
    customer_ids: Iterable[int] | None = None,
    events_after: dict | None = None,
    concurrent: bool = False,
    before_images: str | None = None,
    ranked_before: dict | None = None,
    meanwhile: Callable[[], object] | None = None,
    committed_reads: Sequence[tuple[str, dict | list | None]] = (),
) -> int:
    """Recompute crm.CustomerMetrics (and crm.CohortContribution) as of the end of `as_of`;
    return the number of customers aggregated.

    Without `customer_ids` every customer is aggregated again (a full refresh). With them only
    those are (an incremental refresh): the caller must include every customer whose orders,
    interactions or customer columns changed or crossed a window edge since the previous
    refresh (segments.jobs does, with the rows whose recheck_on has come). Nothing in a row
    moves by itself from day to day, except the status (recomputed everywhere from the row's
    own dates) and the global ranks (value decile, suggested effort): an incremental refresh
    repairs those from the boundaries the last refresh stored, a full one (or one without
    usable boundaries) re-ranks everyone; only rows whose values differ are written.
    `events_after` ({"order": id, "interaction": id}, the previous refresh's highest ids) lets
    an incremental refresh add only the new orders and interactions to the cohort table and
    keep settled payback days; without it the cohort table is rebuilt. `concurrent` (only
    outside any outer transaction: the caller has committed everything the refresh reads) lets
    the refresh on PostgreSQL give part of its reads to a second connection: a full one part
    of its staging, its payback days and cohort rows, an incremental one of
    SIDE_STAGE_MIN_CUSTOMERS or more half of its customers. `before_images` (PostgreSQL, a
    table made by before_images_create): the rows of the customers aggregated and of those
    whose status moves are recorded there as they were before the refresh wrote them (the
    ranks are not: no aggregate reads them).
    `ranked_before` ({"decile": rows, "effort": rows served}, with `before_images`): the rows
    each rank counted when the stored boundaries were set, known to the caller when nothing but
    the job wrote the metrics table since; the rank repair then counts only the imaged rows.
    `committed_reads`: the caller's statements [(sql, params)] that read the tables as they
    were before the refresh (and write only tables of their own, committed at once): an
    incremental concurrent refresh runs them on its second connection once that one has staged
    its half, any other at its start, before it writes.
    `meanwhile`: the caller's work that reads the refreshed metrics (and the tables below) but
    neither their payback days nor the cohort table, called once the other metrics are written
    and before those are, inside the refresh's transaction: a full concurrent refresh runs it
    while the second connection computes the payback days and cohort rows.

    Afterwards the temporary table CHANGED_TABLE lists the customers aggregated plus those
    whose status or ranks changed, NEW_TABLE those whose metrics row was created, and
    PAYBACK_MOVED_TABLE those whose payback days were written after `meanwhile` ran (a full
    concurrent refresh: days found by the second connection), with the days before and after;
    Customer.status is copied where it differs. Atomic: all or nothing. Raises ValueError for
    a missing date.
    """
    if not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime):
        raise ValueError("as_of must be a date.")
    params = metrics_params(as_of)
    params["now"] = timezone.now()
    scoped = customer_ids is not None
    if scoped:
        ids = sorted({int(pk) for pk in customer_ids})
    if events_after:
        params["max_o"] = int(events_after.get("order") or 0)
        params["max_i"] = int(events_after.get("interaction") or 0)
    payback_side = None  # a full concurrent refresh's second connection
    refreshed = None  # the customers aggregated, when not those of the staging table
    with transaction.atomic(), connection.cursor() as cursor, contextlib.ExitStack() as sides:
        for name in (STAGE_TABLE, CHANGED_TABLE, SCOPE_TABLE, PAYBACK_MOVED_TABLE):
            cursor.execute(f"DROP TABLE IF EXISTS {name}")
        cursor.execute(f"CREATE TEMPORARY TABLE {CHANGED_TABLE} (customer_id bigint)")
        cursor.execute(
            f"CREATE TEMPORARY TABLE {PAYBACK_MOVED_TABLE} "
            "(customer_id bigint, old_days integer, new_days integer)"
        )
        payback_first = _pg() and not scoped
        payback_from = None  # the table of payback days that the write joins
        staff_array = _pg() and _staff_ids_dense(cursor)
        if payback_first and concurrent:
            payback_side, refreshed = _stage_with_side_queries(
                cursor, params, sides, staff_array=staff_array
            )
        elif scoped and concurrent and _pg() and len(ids) >= SIDE_STAGE_MIN_CUSTOMERS:
            _stage_halves(
                cursor,
                params,
                ids,
                keep_payback=events_after is not None,
                staff_array=staff_array,
            )
        else:
            if scoped:
                for sql, args in _scope_statements(ids):
                    cursor.execute(sql, args)
            if payback_first:
                cursor.execute(f"DROP TABLE IF EXISTS {PAYBACK_TABLE}")
                cursor.execute(
                    f"CREATE TEMPORARY TABLE {PAYBACK_TABLE} AS "
                    + _payback_sql(everyone=True, ordered=staff_array),
                    params,
                )
                cursor.execute(f"ANALYZE {PAYBACK_TABLE}")
                payback_from = PAYBACK_TABLE
            if scoped:
                cursor.execute(
                    f"CREATE TEMPORARY TABLE {STAGE_TABLE} AS "
                    + _stage_sql(
                        scoped=True, keep_payback=events_after is not None, staff_array=staff_array
                    ),
                    params,
                )
            else:
                _stage_full(cursor, params, staff_array=staff_array)
        status_side = None
        if scoped and concurrent and _pg():
            # The rows whose status the date moves, found in the committed rows by the second
            # connection while this one writes (a scan of every row, on the other core).
            status_side = sides.enter_context(
                side_query(
                    [
                        *SIDE_SETTINGS,
                        # In this process alone: parallel workers would take the core this
                        # connection writes on, for reads that have time until it needs them.
                        ("SET max_parallel_workers_per_gather = 0", None),
                        *committed_reads,
                        (_status_moves_sql(), params),
                    ]
                )
            )
        else:
            for sql, args in committed_reads:  # nothing is written yet
                cursor.execute(sql, args)
        if _pg():  # temporary tables get no autovacuum; the joins and filters use these columns
            cursor.execute(
                f"ANALYZE {STAGE_TABLE} (customer_id, acquisition_cost, acquisition_date, "
                "payback_days, margin_lifetime, min_margin, acquisition_month)"
            )
        cursor.execute(_negative_costs_sql(), params)
        params["negative_costs"] = cursor.fetchone()[0]
        if not payback_first:
            cursor.execute(_payback_sql(scoped=scoped), params)
        if refreshed is None:
            cursor.execute(f"SELECT COUNT(*) FROM {STAGE_TABLE}")  # noqa: S608
            refreshed = cursor.fetchone()[0]
        if before_images:  # the stored rows of the customers staged, as they are now
            staged = f"SELECT customer_id FROM {STAGE_TABLE}"  # noqa: S608
            cursor.execute(before_images_sql(before_images, staged, first=True))
            before_images_keyed(cursor, before_images)
        old_rows = _old_rows(before_images)  # their images, or the metrics table
        incremental_cohorts = scoped and events_after is not None
        if incremental_cohorts:  # before the write: it reads the old cohorts
            _cohorts_delta(cursor, params, old_rows=old_rows)
        # A scoped refresh writes the ranks of its rows by the stored boundaries, with the
        # rest of each row; the repair below then only moves the rows between an old and a
        # new boundary (not every row written a second time).
        tiled_by = _stored_boundaries(cursor) if scoped else None
        tiles = None
        if tiled_by is not None:
            tiles, tile_args = _tiles_sql("s", tiled_by, "old")
            params = {**params, **tile_args}
        written = _write_sql(
            scoped=scoped,
            payback_from=payback_from,
            tiles=tiles,
            old_rows=old_rows,
            stored_payback=payback_side is not None,
        )
        for statement in written:
            cursor.execute(statement, params)
        if payback_from:
            cursor.execute(f"DROP TABLE {payback_from}")
        cursor.execute(f"DROP TABLE IF EXISTS {STATUS_TABLE}")
        # The status to copy into Customer: the customers aggregated whose status differs from
        # the customer's (read in the same statement as their dates), and below those whose
        # status the date moves. A full refresh thus joins no table of every customer again.
        cursor.execute(
            f"CREATE TEMPORARY TABLE {STATUS_TABLE} AS "  # noqa: S608
            f"SELECT customer_id, status FROM {STAGE_TABLE} "
            f"WHERE {_distinct('status', 'customer_status')}"
        )
        cursor.execute(f"DROP TABLE {STAGE_TABLE}")
        cursor.execute(f"DROP TABLE IF EXISTS {SCOPE_TABLE}")
        # Status moves with the date for everyone: rewrite only the rows where it changes.
        _status_pass(
            cursor,
            params,
            before_images=before_images,
            candidates=status_side.result() if status_side else None,
        )
        repaired = scoped and _ranks_repair(
            cursor, before_images=before_images, ranked_before=ranked_before, tiled_by=tiled_by
        )
        if not repaired:
            _ranks_full(cursor)
        if _pg() and scoped:
            cursor.execute(f"ANALYZE {CHANGED_TABLE}")
            cursor.execute(f"ANALYZE {STATUS_TABLE}")
        cursor.execute(_copy_status_sql())
        cursor.execute(f"DROP TABLE IF EXISTS {STATUS_TABLE}")
        if meanwhile:  # while the second connection computes its cohort rows, if it does
            meanwhile()
        rows = None
        if payback_side:  # last: the longer the second connection has for them, the better
            rows = payback_side.result()  # the cohort cells
            _payback_moves(cursor, params)
        if not incremental_cohorts:
            _cohorts_rebuild(cursor, params, rows=rows)
        MetricsRefresh.objects.create(as_of=as_of, full=not scoped, customers=refreshed)
    return refreshed
