"""Writes for buckets: create/update with versioning, and membership refresh in SQL."""

from __future__ import annotations

import contextlib
import logging
from datetime import date
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.metrics import before_images_sql, key_lookups, planner_setting

from . import rules as rules_mod
from . import selectors
from .models import Bucket, BucketVersion

logger = logging.getLogger(__name__)

BUCKET_FIELDS = ("name", "persona", "colour", "priority", "active", "rules")
_REFRESH_LOCK = 724_311_001  # pg_advisory_xact_lock key: one membership refresh at a time
# Up to this many changed customers, the membership writes look each one up by key.
KEYED_WRITES_MAX = 50_000


def _check_unique(bucket: Bucket) -> None:
    others = Bucket.objects.exclude(pk=bucket.pk)
    errors = {}
    if others.filter(priority=bucket.priority).exists():
        clash = others.get(priority=bucket.priority)
        errors["priority"] = _(
            "Priority %(priority)s is already used by bucket '%(name)s'; choose another number."
        ) % {"priority": bucket.priority, "name": clash.name}
    if others.filter(name__iexact=bucket.name).exists():
        errors["name"] = _("A bucket named '%(name)s' already exists.") % {"name": bucket.name}
    if errors:
        raise ValidationError(errors)


def _save_version(bucket: Bucket, user) -> BucketVersion:
    return BucketVersion.objects.create(
        bucket=bucket,
        version=bucket.version,
        name=bucket.name,
        persona=bucket.persona,
        colour=bucket.colour,
        priority=bucket.priority,
        active=bucket.active,
        rules=bucket.rules,
        saved_by=user if user and user.is_authenticated else None,
        saved_at=bucket.updated_at,
    )


def _validate_bucket(bucket: Bucket) -> None:
    try:
        bucket.rules = rules_mod.validate(bucket.rules)
    except ValidationError as exc:
        raise ValidationError({"rules": exc.messages})
    bucket.full_clean(validate_unique=False, validate_constraints=False)
    _check_unique(bucket)


def bucket_create(
    *,
    name: str,
    rules: dict,
    priority: int,
    persona: str = "",
    colour: str = "#1f77b4",
    active: bool = True,
    user=None,
) -> Bucket:
    """Create a bucket and its version 1, atomically.

    Raises ValidationError (by field) for bad rules (naming the condition), a priority or name
    already taken, a bad colour; nothing is written then.
    """
    now = timezone.now()
    bucket = Bucket(
        name=(name or "").strip(),
        persona=persona or "",
        colour=colour,
        priority=priority,
        active=active,
        rules=rules,
        version=1,
        created_at=now,
        updated_at=now,
        updated_by=user if user and user.is_authenticated else None,
    )
    _validate_bucket(bucket)
    try:
        with transaction.atomic():
            bucket.save()
            _save_version(bucket, user)
    except IntegrityError:
        # A concurrent save took the name or priority between the check and the insert.
        _check_unique(bucket)
        raise
    return bucket


def bucket_update(*, bucket: Bucket, user=None, **changes: Any) -> Bucket:
    """Change a bucket's fields (name, persona, colour, priority, active, rules).

    A real change bumps the version and stores it as a BucketVersion with who and when, in
    one transaction; saving without changes writes nothing. Raises ValidationError as
    bucket_create does; the bucket row is then left unchanged.
    """
    unknown = set(changes) - set(BUCKET_FIELDS)
    if unknown:
        raise TypeError(f"bucket_update: unknown fields {sorted(unknown)}")
    with transaction.atomic():
        locked = Bucket.objects.select_for_update().get(pk=bucket.pk)
        for attr, value in changes.items():
            setattr(locked, attr, value.strip() if attr == "name" and value else value)
        _validate_bucket(locked)
        current = Bucket.objects.get(pk=bucket.pk)
        if all(getattr(locked, f) == getattr(current, f) for f in BUCKET_FIELDS):
            return current
        locked.version = current.version + 1
        locked.updated_at = timezone.now()
        locked.updated_by = user if user and user.is_authenticated else None
        try:
            with transaction.atomic():
                locked.save(update_fields=[*BUCKET_FIELDS, "version", "updated_at", "updated_by"])
                _save_version(locked, user)
        except IntegrityError:
            _check_unique(locked)
            raise
    for attr in (*BUCKET_FIELDS, "version", "updated_at", "updated_by"):
        setattr(bucket, attr, getattr(locked, attr))
    return bucket


def memberships_refresh(
    *,
    as_of: date,
    customer_ids=None,
    scope_table: str | None = None,
    before_images: str | None = None,
) -> dict:
    """Re-evaluate every active bucket by priority, in SQL, and record the outcome.

    One CASE expression (segments.selectors.bucket_assignment) assigns each customer to the
    first matching bucket or to Unsegmented, into a narrow temporary table; then, in one
    transaction holding an advisory lock (two refreshes never interleave): open history rows
    are closed (left_on = as_of) for customers whose bucket changed, new rows are opened
    (entered_on = as_of), CurrentMembership is updated and filled in, and the bucket is
    copied into crm.CustomerMetrics (for the ROI aggregation). `customer_ids` or
    `scope_table` (a temporary table of customer_id) limit the customers evaluated. Idempotent: a
    second run with the same data changes nothing. Buckets whose stored rules no longer
    validate are skipped and reported. `before_images` (PostgreSQL, a table made by
    crm.metrics.before_images_create): the metrics rows whose bucket copy changes are recorded
    there first, as they were.

    Returns {"counts": {bucket_id or None: customers}, "entered": n, "left": n,
    "skipped": [bucket ids]} (counts cover the customers evaluated).
    """
    assignment = selectors.bucket_assignment(
        as_of=as_of, customer_ids=customer_ids, scope_table=scope_table
    )
    for bucket in assignment.skipped:
        logger.warning("bucket %s skipped: its rules no longer validate", bucket.pk)
    everyone = scope_table is None and customer_ids is None
    queryset = assignment.queryset
    stored = ""  # the stored copies, read with the rules when everyone is evaluated
    if everyone:
        # What each customer has now (current membership, and the bucket copied into the
        # metrics row) travels with the assignment, read in the same joins as the rules, so
        # that finding the changes below reads no table of every customer again (1M
        # customers: 1.7 s -> 0.2 s for that, plus the join here).
        queryset = queryset.values(
            "pk",
            "branch",
            has_current=F("current_membership__customer_id"),
            current_bucket=F("current_membership__bucket_id"),
            current_reason=F("current_membership__reason"),
            has_copy=F("metrics__customer_id"),
            copy_bucket=F("metrics__bucket_id"),
        )
        stored = ", s.has_current, s.current_bucket, s.current_reason, s.has_copy, s.copy_bucket"
    sql, params = queryset.query.sql_with_params()
    bucket_ids, reasons = assignment.bucket_ids, assignment.reasons
    postgres = connection.vendor == "postgresql"
    with transaction.atomic(), connection.cursor() as cur:
        if postgres:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [_REFRESH_LOCK])
        # SQLite (make run's embedded default) opens write transactions IMMEDIATE: one writer.
        # The statements below are portable to SQLite >= 3.39 (UPDATE ... FROM, IS DISTINCT FROM).
        on_commit = " ON COMMIT DROP" if postgres else ""
        cur.execute("DROP TABLE IF EXISTS segments_tmp_assignment")
        # Each branch's bucket and reason, looked up by a CASE on the branch number rather than
        # a join with a table of branches: the assignment then joins only tables keyed by
        # customer, which PostgreSQL can merge in key order (enable_hashjoin off below).
        branch_bucket = " ".join(
            f"WHEN {n} THEN CAST(%s AS bigint)" for n in range(1, len(bucket_ids) + 1)
        )
        branch_reason = " ".join(f"WHEN {n} THEN %s" for n in range(1, len(reasons) + 1))
        # `sql` is Django's compiled query; its values travel as parameters. PostgreSQL: OFFSET
        # 0 keeps the subquery a subquery, so that the rules' CASE is computed once a row; once
        # flattened into the join, the hash join computed it twice (1M customers: 4.4 -> 3.4 s).
        fence = " OFFSET 0" if postgres else ""
        assigned = (
            f"SELECT s.pk AS customer_id, CASE s.branch {branch_bucket} END AS bucket_id, "  # noqa: S608
            f"CASE s.branch {branch_reason} END AS reason{stored} FROM ({sql}{fence}) s"
        )
        params = (*bucket_ids, *reasons, *params)
        if not everyone:  # a narrow table of the customers evaluated
            cur.execute(
                "CREATE TEMP TABLE segments_tmp_assignment (customer_id bigint, "
                f"bucket_id bigint, reason text){on_commit}"
            )
            # The nightly job's scope (a table in key order, with its key): looked up in that
            # order, each customer and metrics row next to the last, not hashed against a scan
            # of every customer, nor in a hash table's order (48.7k of 1M: 0.37 -> 0.24 s).
            keyed = (
                planner_setting(cur, "enable_hashjoin", "off")
                if scope_table is not None
                else contextlib.nullcontext()
            )
            with keyed:
                cur.execute(f"INSERT INTO segments_tmp_assignment {assigned}", params)
            cur.execute("ANALYZE segments_tmp_assignment")  # temp tables get no autovacuum stats
        distinct = "IS DISTINCT FROM" if postgres else "IS NOT"
        # The customers whose bucket or reason differs from their current membership, or who
        # have none yet: usually a small share of those evaluated. Every write below is driven
        # by this table (index lookups), not by a join with each membership table. The open
        # history row always agrees with the current membership: both are written only here,
        # in one transaction, and buckets with members cannot be deleted (PROTECT). When
        # everyone is evaluated, customers whose metrics row carries another bucket are added
        # too, so that a full refresh repairs every copy (see bucket_copies_repair).
        if everyone:  # the stored values came with the assignment: no table of everyone
            current = {"id": "t.has_current", "bucket": "t.current_bucket"}
            current["reason"] = "t.current_reason"
            source, joins = f"({assigned}) t ", ""
            copy_differs = f" OR (t.has_copy IS NOT NULL AND t.copy_bucket {distinct} t.bucket_id)"
        else:
            current = {"id": "c.customer_id", "bucket": "c.bucket_id", "reason": "c.reason"}
            source = "segments_tmp_assignment t "
            joins = "LEFT JOIN segments_currentmembership c ON c.customer_id = t.customer_id "
            copy_differs = ""
        moved = f"{current['id']} IS NULL OR {current['bucket']} {distinct} t.bucket_id"
        current_differs = f"{moved} OR {current['reason']} {distinct} t.reason"
        cur.execute("DROP TABLE IF EXISTS segments_tmp_change")
        # Everyone on PostgreSQL: the customer, metrics and membership tables are joined in key
        # order (merge joins along their primary keys), not hashed: 1M customers 4.5 -> 3.1 s.
        # The nightly job's scope: the assignment, in key order, looks each current membership
        # up by key, instead of hashing or merging it with all of them (48.7k: 90 -> 40 ms).
        if scope_table is not None:
            joining = key_lookups(cur)
        elif everyone:
            joining = planner_setting(cur, "enable_hashjoin", "off")
        else:
            joining = contextlib.nullcontext()
        with joining:
            cur.execute(
                "CREATE TEMP TABLE segments_tmp_change" + on_commit + " AS "  # noqa: S608
                "SELECT t.customer_id, t.bucket_id, t.reason, "
                f"CASE WHEN {current['id']} IS NULL THEN 1 ELSE 0 END AS is_new, "
                f"CASE WHEN {moved} THEN 1 ELSE 0 END AS moved, "
                f"CASE WHEN {current_differs} THEN 1 ELSE 0 END AS stale "
                f"FROM {source}{joins}WHERE {current_differs}{copy_differs}",
                params if everyone else None,
            )
        changes = cur.rowcount
        if postgres:
            cur.execute("ANALYZE segments_tmp_change")
        with _keyed_writes(cur, changes):
            left, entered = _memberships_write(cur, as_of=as_of, before_images=before_images)
        if everyone:  # every customer now has the current membership just evaluated
            cur.execute(
                "SELECT bucket_id, count(*) FROM segments_currentmembership GROUP BY bucket_id"
            )
        else:
            cur.execute(
                "SELECT bucket_id, count(*) FROM segments_tmp_assignment GROUP BY bucket_id"
            )
        counts = dict(cur.fetchall())
        cur.execute("DROP TABLE IF EXISTS segments_tmp_assignment")
        cur.execute("DROP TABLE segments_tmp_change")
    return {
        "counts": counts,
        "entered": entered,
        "left": left,
        "skipped": [b.pk for b in assignment.skipped],
    }


def _keyed_writes(cur, changes: int):
    """PostgreSQL, up to KEYED_WRITES_MAX changed customers: the writes driven by the change
    table look each customer up by key (crm.metrics.key_lookups, strict). Otherwise the
    planner, which knows that table's size, hashes it against a scan of every membership or
    metrics row: 1M customers, 8.4k changed, the three writes 0.75 -> about 0.2 s. More
    changes than that (a first run, every bucket edited): as planned."""
    if connection.vendor != "postgresql" or changes > KEYED_WRITES_MAX:
        return contextlib.nullcontext()
    return key_lookups(cur, strict=True)


def _memberships_write(cur, *, as_of: date, before_images: str | None) -> tuple[int, int]:
    """Write the changes in segments_tmp_change (memberships_refresh): close the open history
    rows of the customers who moved and open new ones, update or create their current
    memberships, and copy the bucket into their metrics rows (imaged first into
    `before_images`, if given). Returns (left, entered)."""
    distinct = "IS DISTINCT FROM" if connection.vendor == "postgresql" else "IS NOT"
    cur.execute(
        """UPDATE segments_bucketmembership
            SET left_on = CASE WHEN %s > entered_on THEN %s ELSE entered_on END
            FROM segments_tmp_change t
            WHERE segments_bucketmembership.customer_id = t.customer_id
              AND segments_bucketmembership.left_on IS NULL
              AND t.moved = 1""",
        [as_of, as_of],
    )
    left = cur.rowcount
    cur.execute(
        """INSERT INTO segments_bucketmembership (customer_id, bucket_id, entered_on,
                                                   left_on, reason)
            SELECT t.customer_id, t.bucket_id, %s, NULL, t.reason
            FROM segments_tmp_change t
            WHERE t.moved = 1 AND NOT EXISTS (
                SELECT 1 FROM segments_bucketmembership m
                WHERE m.customer_id = t.customer_id AND m.left_on IS NULL)""",
        [as_of],
    )
    entered = cur.rowcount
    # Two plain statements rather than INSERT ... ON CONFLICT, which would lock every
    # unchanged row too.
    cur.execute(
        """UPDATE segments_currentmembership
            SET bucket_id = t.bucket_id,
                since = CASE WHEN t.moved = 1 THEN %s
                             ELSE segments_currentmembership.since END,
                reason = t.reason
            FROM segments_tmp_change t
            WHERE segments_currentmembership.customer_id = t.customer_id AND t.stale = 1""",
        [as_of],
    )
    cur.execute(
        """INSERT INTO segments_currentmembership (customer_id, bucket_id, since, reason)
            SELECT t.customer_id, t.bucket_id, %s, t.reason
            FROM segments_tmp_change t WHERE t.is_new = 1""",
        [as_of],
    )
    if before_images:  # the rows whose copy changes, as they are, if not imaged yet
        moving = f"""SELECT t.customer_id FROM segments_tmp_change t
            JOIN crm_customermetrics m ON m.customer_id = t.customer_id
            WHERE m.bucket_id {distinct} t.bucket_id AND NOT EXISTS (
                SELECT 1 FROM {before_images} i WHERE i.image_of = t.customer_id)"""  # noqa: S608
        cur.execute(before_images_sql(before_images, moving))
    cur.execute(  # the bucket copied into the metrics rows (for the ROI aggregates)
        f"""UPDATE crm_customermetrics SET bucket_id = t.bucket_id
            FROM segments_tmp_change t
            WHERE crm_customermetrics.customer_id = t.customer_id
              AND crm_customermetrics.bucket_id {distinct} t.bucket_id"""  # noqa: S608
    )
    return left, entered


def bucket_copies_repair(*, customers_table: str, before_images: str | None = None) -> int:
    """Copy the current bucket into the metrics rows of the customers in `customers_table` (a
    temporary table of customer_id) where it differs: for metrics rows created after their
    customer's last evaluation, which a scoped memberships_refresh does not look at unless the
    membership changes. One UPDATE; returns the number of rows fixed. `before_images`: as for
    memberships_refresh."""
    distinct = "IS DISTINCT FROM" if connection.vendor == "postgresql" else "IS NOT"
    with connection.cursor() as cur:
        if before_images:
            cur.execute(
                before_images_sql(
                    before_images,
                    f"""SELECT n.customer_id FROM {customers_table} n
                    JOIN segments_currentmembership c ON c.customer_id = n.customer_id
                    JOIN crm_customermetrics m ON m.customer_id = n.customer_id
                    WHERE m.bucket_id {distinct} c.bucket_id""",  # noqa: S608
                )
            )
        cur.execute(
            f"""UPDATE crm_customermetrics SET bucket_id = c.bucket_id
                FROM {customers_table} n
                JOIN segments_currentmembership c ON c.customer_id = n.customer_id
                WHERE crm_customermetrics.customer_id = n.customer_id
                  AND crm_customermetrics.bucket_id {distinct} c.bucket_id"""  # noqa: S608
        )
        return cur.rowcount


def buckets_ensure(*, specs: list[dict], user=None) -> tuple[list[Bucket], int]:
    """Create the buckets of `specs` (dicts of bucket_create's arguments) whose name does not
    exist yet; existing ones are left untouched, so running it again changes nothing. A
    wanted priority already taken by another bucket moves to the next free number. Atomic:
    a bad spec (ValidationError) creates none. Returns (created buckets, existing count).
    """
    created: list[Bucket] = []
    existing = 0
    with transaction.atomic():
        names = {n.lower() for n in Bucket.objects.values_list("name", flat=True)}
        taken = set(Bucket.objects.values_list("priority", flat=True))
        for spec in specs:
            if spec["name"].lower() in names:
                existing += 1
                continue
            priority = spec["priority"]
            while priority in taken:
                priority += 1
            taken.add(priority)
            names.add(spec["name"].lower())
            created.append(bucket_create(**{**spec, "priority": priority}, user=user))
    return created, existing
