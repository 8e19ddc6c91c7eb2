"""Per-customer derived metrics (crm.CustomerMetrics), refreshed set-based in SQL.

One call aggregates orders and interactions per customer with a few CTEs into a temporary
staging table, then writes the narrow metrics table with one ``INSERT ... ON CONFLICT`` and
recomputes the global ranks (value decile, suggested effort) with window functions. No Python
loop over customers. The same SQL runs on PostgreSQL (fast path: ``mode()`` ordered-set
aggregates, ``= ANY(array)``) and on SQLite (portable variants of those two pieces).

Definitions (domain.md): the window is the trailing ``CRM_METRICS_WINDOW_DAYS`` days up to and
including ``as_of`` (local dates in ``TIME_ZONE``); lifetime is everything up to ``as_of``.
Ties in "favourite" values go to the alphabetically first value.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .models import Customer, CustomerMetrics, Interaction, Order, User

BUYER_WINDOW_DAYS = 365  # "regular" = 4+ orders in the trailing 365 days (domain.md)
REGULAR_MIN_ORDERS = 4
STAGE_TABLE = "crm_metrics_stage"

# Columns computed per customer in the staging table, in insert order.
_STAGE_COLUMNS = [
    "order_count",
    "orders_window",
    "first_order_at",
    "last_order_at",
    "days_since_last_order",
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
]


def _start_of_day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=timezone.get_default_timezone())


def metrics_params(as_of: dt.date) -> dict:
    """The time boundaries for `as_of` as SQL parameters (aware datetimes and dates)."""
    window_days = settings.CRM_METRICS_WINDOW_DAYS
    active, at_risk = settings.CRM_ACTIVE_DAYS, settings.CRM_AT_RISK_DAYS
    return {
        "as_of": as_of,
        "end_ts": _start_of_day(as_of + dt.timedelta(days=1)),
        "window_start": _start_of_day(as_of - dt.timedelta(days=window_days - 1)),
        "year_start": _start_of_day(as_of - dt.timedelta(days=BUYER_WINDOW_DAYS - 1)),
        # "active" = ordered within ACTIVE days: local order date >= as_of - ACTIVE days.
        "active_ts": _start_of_day(as_of - dt.timedelta(days=active)),
        "at_risk_ts": _start_of_day(as_of - dt.timedelta(days=at_risk)),
        "active_date": as_of - dt.timedelta(days=active),
        "at_risk_date": as_of - dt.timedelta(days=at_risk),
        "rate": settings.CRM_STAFF_COST_PER_HOUR,
        "tz": settings.TIME_ZONE,
        "regular_min": REGULAR_MIN_ORDERS,
    }


def _days_since(expr: str) -> str:
    """SQL for whole local days between `expr` (a timestamp) and %(as_of)s."""
    if connection.vendor == "postgresql":
        return f"(%(as_of)s::date - ({expr} AT TIME ZONE %(tz)s)::date)"
    return f"CAST(julianday(%(as_of)s) - julianday(date({expr})) AS INTEGER)"


def _status(last_order: str, cust: str) -> str:
    """SQL CASE for the status (domain.md "Status"); `cust` aliases crm_customer."""

    def by(ts_expr: str, active: str, at_risk: str) -> str:
        return (
            f"CASE WHEN {ts_expr} >= {active} THEN 'active' "
            f"WHEN {ts_expr} >= {at_risk} THEN 'at_risk' ELSE 'churned' END"
        )

    return (
        "CASE "
        f"WHEN {cust}.cancelled_at IS NOT NULL AND {cust}.cancelled_at < %(end_ts)s "
        "THEN 'churned' "
        f"WHEN {last_order} IS NOT NULL THEN "
        + by(last_order, "%(active_ts)s", "%(at_risk_ts)s")
        + f" WHEN {cust}.acquisition_date IS NOT NULL THEN "
        + by(f"{cust}.acquisition_date", "%(active_date)s", "%(at_risk_date)s")
        + " ELSE "
        + by(f"{cust}.created_at", "%(active_ts)s", "%(at_risk_ts)s")
        + " END"
    )


def _stage_sql(*, scoped: bool) -> str:
    """SELECT producing one staging row per customer in scope."""
    pg = connection.vendor == "postgresql"
    customer = Customer._meta.db_table
    order = Order._meta.db_table
    interaction = Interaction._meta.db_table
    user = User._meta.db_table
    if not scoped:
        scope_filter = "TRUE" if pg else "1 = 1"
    elif pg:
        scope_filter = "c.id = ANY(%(ids)s)"
    else:
        scope_filter = "c.id IN (SELECT value FROM json_each(%(ids)s))"

    in_window = "o.placed_at >= %(window_start)s"
    if pg:
        # One pass over the orders: mode() ignores NULLs and returns the smallest of tied values.
        modes_cte = ""
        modes_cols = (
            ", mode() WITHIN GROUP (ORDER BY o.channel) AS preferred_channel"
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
    cost = "i.minutes * COALESCE(u.hourly_cost, %(rate)s)"
    return f"""
WITH scope AS (
    SELECT c.id AS customer_id, c.cancelled_at, c.acquisition_date, c.created_at
    FROM {customer} c WHERE {scope_filter}
), o AS (
    SELECT o.customer_id,
        COUNT(*) AS order_count,
        SUM(CASE WHEN {in_window} THEN 1 ELSE 0 END) AS orders_window,
        SUM(CASE WHEN o.placed_at >= %(year_start)s THEN 1 ELSE 0 END) AS orders_year,
        MIN(o.placed_at) AS first_order_at,
        MAX(o.placed_at) AS last_order_at,
        SUM(CASE WHEN {in_window} THEN o.revenue ELSE 0 END) AS revenue_window,
        SUM(CASE WHEN {in_window} THEN o.margin ELSE 0 END) AS margin_window,
        SUM(o.revenue) AS revenue_lifetime,
        SUM(o.margin) AS margin_lifetime
        {modes_cols}
    FROM {order} o JOIN scope s ON s.customer_id = o.customer_id
    WHERE o.placed_at < %(end_ts)s
    GROUP BY o.customer_id
), i AS (
    SELECT i.customer_id,
        SUM(CASE WHEN {i_window} THEN i.minutes ELSE 0 END) AS minutes_window,
        SUM(i.minutes) AS minutes_lifetime,
        ROUND(SUM(CASE WHEN {i_window} THEN {cost} ELSE 0 END) / 60.0, 2) AS cost_window,
        ROUND(SUM({cost}) / 60.0, 2) AS cost_lifetime
    FROM {interaction} i
    JOIN scope s ON s.customer_id = i.customer_id
    JOIN {user} u ON u.id = i.staff_id
    WHERE i.occurred_at < %(end_ts)s
    GROUP BY i.customer_id
){modes_cte}
SELECT s.customer_id,
    COALESCE(o.order_count, 0) AS order_count,
    COALESCE(o.orders_window, 0) AS orders_window,
    o.first_order_at,
    o.last_order_at,
    {_days_since("o.last_order_at")} AS days_since_last_order,
    COALESCE(o.revenue_window, 0) AS revenue_window,
    COALESCE(o.margin_window, 0) AS margin_window,
    COALESCE(o.revenue_lifetime, 0) AS revenue_lifetime,
    COALESCE(o.margin_lifetime, 0) AS margin_lifetime,
    CASE WHEN o.order_count > 0 THEN ROUND(o.revenue_lifetime / o.order_count, 2) END AS aov,
    CASE WHEN o.order_count IS NULL THEN 'none'
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
    {_status("o.last_order_at", "s")} AS status
FROM scope s
LEFT JOIN o ON o.customer_id = s.customer_id
LEFT JOIN i ON i.customer_id = s.customer_id{modes_join}
"""  # noqa: S608


def _upsert_sql() -> str:
    table = CustomerMetrics._meta.db_table
    cols = ", ".join(_STAGE_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in [*_STAGE_COLUMNS, "as_of", "refreshed_at"])
    # "WHERE 1 = 1" keeps SQLite's parser from reading ON CONFLICT as a join constraint.
    return (
        f"INSERT INTO {table} (customer_id, {cols}, as_of, refreshed_at) "  # noqa: S608
        f"SELECT customer_id, {cols}, %(as_of)s, %(now)s FROM {STAGE_TABLE} WHERE 1 = 1 "
        f"ON CONFLICT (customer_id) DO UPDATE SET {updates}"
    )


def _advance_sql() -> str:
    """Move the time-dependent columns of rows outside the scope to the new as_of."""
    table = CustomerMetrics._meta.db_table
    customer = Customer._meta.db_table
    return (
        f"UPDATE {table} AS m SET as_of = %(as_of)s, "  # noqa: S608
        f"days_since_last_order = {_days_since('m.last_order_at')}, "
        f"status = {_status('m.last_order_at', 'c')} "
        f"FROM {customer} c WHERE c.id = m.customer_id AND m.as_of <> %(as_of)s"
    )


def _ranks_sql() -> str:
    table = CustomerMetrics._meta.db_table
    return f"""
UPDATE {table} AS m SET value_decile = r.decile, suggested_effort = r.effort
FROM (
    SELECT customer_id,
        NTILE(10) OVER (ORDER BY contribution_lifetime DESC, customer_id) AS decile,
        CASE WHEN minutes_window > 0 THEN NTILE(10) OVER (
            PARTITION BY CASE WHEN minutes_window > 0 THEN 1 ELSE 0 END
            ORDER BY minutes_window, customer_id) END AS effort
    FROM {table}
) r
WHERE r.customer_id = m.customer_id
  AND (m.value_decile IS DISTINCT FROM r.decile OR m.suggested_effort IS DISTINCT FROM r.effort)
"""  # noqa: S608


def _copy_status_sql() -> str:
    table = CustomerMetrics._meta.db_table
    customer = Customer._meta.db_table
    return (
        f"UPDATE {customer} AS c SET status = m.status FROM {table} m "  # noqa: S608
        "WHERE m.customer_id = c.id AND c.status <> m.status"
    )


def metrics_refresh(*, as_of: dt.date, customer_ids: Iterable[int] | None = None) -> int:
    """Recompute crm.CustomerMetrics as of the end of `as_of`; return the rows recomputed.

    With `customer_ids`, only those customers are aggregated again (incremental run); the
    time-dependent columns of every other row (as_of, days since last order, status) are moved
    to `as_of` in one UPDATE, which is exact as long as the caller includes every customer
    whose orders or interactions changed or crossed a window edge (segments.jobs does).
    Value deciles and suggested effort are always re-ranked over all customers, and
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
        params["ids"] = ids if connection.vendor == "postgresql" else json.dumps(ids)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {STAGE_TABLE}")
        cursor.execute(
            f"CREATE TEMPORARY TABLE {STAGE_TABLE} AS {_stage_sql(scoped=scoped)}", params
        )
        cursor.execute(f"SELECT COUNT(*) FROM {STAGE_TABLE}")  # noqa: S608
        refreshed = cursor.fetchone()[0]
        cursor.execute(_upsert_sql(), params)
        cursor.execute(f"DROP TABLE {STAGE_TABLE}")
        if scoped:
            cursor.execute(_advance_sql(), params)
        cursor.execute(_ranks_sql())
        cursor.execute(_copy_status_sql())
    return refreshed
