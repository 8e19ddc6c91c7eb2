"""Realistic synthetic data: the rows behind `seed_demo` (a few hundred customers) and
`generate_reference_data` (a million), so the demo looks like the reference data set.

Generation is pure and deterministic: `generate_chunk` turns (seed, chunk number, first id,
count, staff ids, today) into plain tuples, with one `random.Random` per chunk, so the same seed
and date always give the same rows whatever the chunk boundaries of earlier runs. Rows are
written chunk by chunk (constant memory): PostgreSQL through psycopg 3 COPY, other databases
through executemany. Values are already in the database's text form (UTC timestamps, money as
"12.34"), so no per-value adaptation is needed on the fast path.

Shape of the data: customers acquired over the last two years; per-customer activity drawn
from a log-normal, so a few customers get most orders and interactions (about 5 orders and
10 interactions per customer on average); a quarter drift away (no orders in the last
180+ days) and a few are cancelled; social followers are long-tailed (Pareto), so most
customers have no or small reach and a handful are influencers.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from statistics import NormalDist

from django.db import connection
from psycopg.copy import QueuedLibpqWriter

from .models import Customer, FollowUp, Interaction, Order, SocialProfile
from .scores import influence_score

DAYS = 730  # two years of history
CHUNK = 5_000

CUSTOMER_COLS = (
    "id",
    "external_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "preferred_language",
    "email_opt_out",
    "birth_year",
    "gender",
    "city",
    "region",
    "country",
    "occupation",
    "lifestyle_notes",
    "web_savviness",
    "browser",
    "referral_source",
    "acquisition_date",
    "acquisition_channel",
    "acquisition_cost",
    "service_effort",
    "effort_rated_by_id",
    "effort_rated_at",
    "influence_computed",
    "influence_override",
    "influence_override_reason",
    "influence",
    "status",
    "cancelled_at",
    "owner_id",
    "created_at",
    "updated_at",
)
PROFILE_COLS = ("customer_id", "network", "handle", "followers", "updated_at")
ORDER_COLS = (
    "customer_id",
    "external_id",
    "placed_at",
    "channel",
    "revenue",
    "cost_of_goods",
    "margin",
    "brand",
    "category",
)
INTERACTION_COLS = (
    "customer_id",
    "staff_id",
    "occurred_at",
    "channel",
    "direction",
    "minutes",
    "summary",
    "outcome",
    "follow_up_on",
    "external_id",
    "created_at",
)
FOLLOW_UP_COLS = (
    "customer_id",
    "assigned_to_id",
    "source",
    "source_ref",
    "reason",
    "due_on",
    "status",
    "outcome",
    "created_at",
)

FIRST_NAMES = [
    "Minjun",
    "Seoyeon",
    "Jiho",
    "Haeun",
    "Doyun",
    "Jiwoo",
    "Eunwoo",
    "Seojun",
    "Hayoon",
    "Yejun",
    "Jia",
    "Siwoo",
    "Sua",
    "Juwon",
    "Chaewon",
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Oliver",
    "Sophia",
    "James",
    "Mia",
    "Lucas",
    "Amelia",
    "Ethan",
    "Chloe",
    "Daniel",
    "Grace",
    "Leo",
    "Hannah",
    "Jack",
    "Zoe",
    "Ryan",
    "Nora",
    "Adam",
    "Lily",
    "Sam",
    "Ella",
]
LAST_NAMES = [
    "Kim",
    "Lee",
    "Park",
    "Choi",
    "Jung",
    "Kang",
    "Cho",
    "Yoon",
    "Jang",
    "Lim",
    "Han",
    "Oh",
    "Seo",
    "Shin",
    "Kwon",
    "Smith",
    "Johnson",
    "Brown",
    "Taylor",
    "Wilson",
    "Davies",
    "Evans",
    "Walker",
    "Wright",
    "Green",
    "Hall",
    "Clarke",
    "Lewis",
    "Young",
    "Moore",
]
PLACES = (
    ("Seoul", "Seoul", "KR", 30),
    ("Busan", "Busan", "KR", 10),
    ("Incheon", "Incheon", "KR", 6),
    ("Daegu", "Daegu", "KR", 5),
    ("Seongnam", "Gyeonggi", "KR", 5),
    ("Daejeon", "Daejeon", "KR", 3),
    ("London", "England", "GB", 8),
    ("Manchester", "England", "GB", 3),
    ("New York", "NY", "US", 6),
    ("San Francisco", "CA", "US", 4),
    ("Toronto", "ON", "CA", 3),
    ("Sydney", "NSW", "AU", 3),
    ("Tokyo", "Tokyo", "JP", 4),
    ("Berlin", "Berlin", "DE", 3),
)
OCCUPATIONS = [
    "engineer",
    "teacher",
    "nurse",
    "student",
    "designer",
    "accountant",
    "manager",
    "chef",
    "retired",
    "lawyer",
    "sales",
    "clerk",
    "doctor",
    "artist",
    "researcher",
    "driver",
    "homemaker",
]
BROWSERS = ("Chrome", "Safari", "Samsung Internet", "Edge", "Firefox", "Whale")
REFERRALS = ("friend", "search", "instagram", "youtube", "newsletter", "store visit", "blog", "")
ACQUISITION = (  # channel, weight, CAC range in cents
    ("organic", 30, (0, 500)),
    ("paid search", 20, (1500, 6000)),
    ("social ads", 18, (1000, 5000)),
    ("referral", 12, (500, 2000)),
    ("store", 15, (500, 3000)),
    ("partner", 5, (2000, 9000)),
)
CATEGORIES = ("shoes", "bags", "outerwear", "tops", "accessories", "beauty", "home", "kids")
BRANDS = ("Acme", "Northwind", "Hanbit", "Contoso", "Sora", "Fabrikam", "Mirae", "Tailspin")
NETWORKS = ("instagram", "tiktok", "youtube", "x", "facebook", "blog")
INTERACTION_CHANNELS = (("phone", 35), ("email", 25), ("chat", 25), ("store", 8), ("social", 4))
OUTCOMES = (
    ("resolved", 50),
    ("information", 20),
    ("sale", 8),
    ("follow_up", 8),
    ("complaint", 6),
    ("escalated", 3),
    ("no_answer", 5),
)
SUMMARIES = (
    "Asked about delivery date",
    "Return of a damaged item",
    "Size exchange",
    "Payment failed at checkout",
    "Wants a product recommendation",
    "Complaint about late delivery",
    "Question about loyalty points",
    "Changed shipping address",
    "Asked for an invoice",
    "Follow-up on earlier request",
)
FOLLOW_UP_REASONS = ("Call back about refund", "Check the replacement arrived", "Send catalogue")


def _cumulative(weights: Sequence[int]) -> list[int]:
    total, out = 0, []
    for w in weights:
        total += w
        out.append(total)
    return out


PLACE_CUM = _cumulative([p[3] for p in PLACES])
ACQ_CUM = _cumulative([a[1] for a in ACQUISITION])
ICH = [c for c, _w in INTERACTION_CHANNELS]
ICH_CUM = _cumulative([w for _c, w in INTERACTION_CHANNELS])
OUT = [o for o, _w in OUTCOMES]
OUT_CUM = _cumulative([w for _o, w in OUTCOMES])


def _lognormal_table(mu: float, sigma: float, size: int = 4096) -> list[float]:
    """Quantiles of a log-normal: indexing with int(random() * size) samples it, fast."""
    normal = NormalDist(mu, sigma)
    return [math.exp(normal.inv_cdf((i + 0.5) / size)) for i in range(size)]


REVENUE_CENTS = [int(v) for v in _lognormal_table(10.6, 0.7)]  # median about 40.00
MINUTES = [min(1440, max(1, int(v))) for v in _lognormal_table(2.2, 0.8)]  # median 9 min
PRICE_ENDINGS = (99, 0, 50, 90)

# exp(sigma^2 / 2): the mean of lognormvariate(0, sigma), to scale the activity to the targets.
SIGMA = 1.1
LOGNORMAL_MEAN = math.exp(SIGMA * SIGMA / 2)


@dataclass
class Chunk:
    customers: list[tuple] = field(default_factory=list)
    profiles: list[tuple] = field(default_factory=list)
    orders: list[tuple] = field(default_factory=list)
    interactions: list[tuple] = field(default_factory=list)
    follow_ups: list[tuple] = field(default_factory=list)

    def tables(self) -> list[tuple[type, tuple[str, ...], list[tuple]]]:
        return [
            (Customer, CUSTOMER_COLS, self.customers),
            (SocialProfile, PROFILE_COLS, self.profiles),
            (Order, ORDER_COLS, self.orders),
            (Interaction, INTERACTION_COLS, self.interactions),
            (FollowUp, FOLLOW_UP_COLS, self.follow_ups),
        ]


def generate_chunk(
    *,
    seed: int,
    chunk_no: int,
    first_id: int,
    count: int,
    staff_ids: Sequence[int],
    today: dt.date,
    orders_per_customer: float = 5.0,
    interactions_per_customer: float = 10.0,
    follow_up_share: float = 0.005,
    external_prefix: str = "R",
    servers: Sequence[int] | None = None,
) -> Chunk:
    """Rows for customers first_id .. first_id + count - 1. Pure: no database access."""
    rng = random.Random(seed * 1_000_003 + chunk_no)
    rand, randrange, choice, lognorm = rng.random, rng.randrange, rng.choice, rng.lognormvariate
    start = today - dt.timedelta(days=DAYS)
    days = [(start + dt.timedelta(days=d)).isoformat() for d in range(DAYS + 1)]
    stamp = f"{today.isoformat()} 00:00:00+00"
    order_scale = orders_per_customer / LOGNORMAL_MEAN
    interaction_scale = interactions_per_customer / LOGNORMAL_MEAN
    chunk = Chunk()
    customers, profiles, orders, interactions = (
        chunk.customers,
        chunk.profiles,
        chunk.orders,
        chunk.interactions,
    )
    n_staff = len(staff_ids)
    servers = list(servers or staff_ids)  # who logs interactions; owners are staff_ids
    n_servers = len(servers)

    def pick(cum: list[int]) -> int:
        return bisect_right(cum, rand() * cum[-1])

    def moment(day: int) -> str:
        sec = int(rand() * 43200)  # office hours, 08:00-20:00 UTC
        return f"{days[day]} {8 + sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}+00"

    n_brands, n_categories, n_summaries = len(BRANDS), len(CATEGORIES), len(SUMMARIES)
    n_table = len(REVENUE_CENTS)
    ich_total, out_total = ICH_CUM[-1], OUT_CUM[-1]

    for cid in range(first_id, first_id + count):
        first, last = choice(FIRST_NAMES), choice(LAST_NAMES)
        city, region, country, _w = PLACES[pick(PLACE_CUM)]
        acq_channel, _w, (cac_lo, cac_hi) = ACQUISITION[pick(ACQ_CUM)]
        cac = randrange(cac_lo, cac_hi + 1)
        acq_day = randrange(DAYS - 14)
        activity = lognorm(0, SIGMA)
        # A quarter of customers drift away: their activity stops well before today.
        drifting = rand() < 0.25
        end_day = acq_day + randrange(max(1, DAYS - acq_day - 180)) if drifting else DAYS
        end_day = max(end_day, acq_day + 1)
        span = end_day - acq_day
        n_orders = int(activity * order_scale + rand())
        owner = staff_ids[randrange(n_staff)] if rand() < 0.7 or activity > 3 else None

        last_order_day = -1
        for _ in range(n_orders):
            day = acq_day + int(rand() * span)
            if day > last_order_day:
                last_order_day = day
            base = REVENUE_CENTS[int(rand() * n_table)]
            revenue = max(100, base - base % 100) + PRICE_ENDINGS[int(rand() * 4)]
            margin = revenue * (15 + int(rand() * 30)) // 100 // 25 * 25
            # SQLite checks margin = revenue - cost in binary floating point: keep it exact.
            # Margins in quarters make it exact 9 times in 10; a quarter price always is.
            tries = 0
            while revenue / 100 - (revenue - margin) / 100 != margin / 100:
                tries += 1
                if tries < 4:
                    margin += 25
                else:
                    revenue -= revenue % 25
            cost = revenue - margin
            r = rand()
            orders.append(
                (
                    cid,
                    "",
                    moment(day),
                    "online" if r < 0.6 else ("store" if r < 0.92 else "phone"),
                    f"{revenue // 100}.{revenue % 100:02d}",
                    f"{cost // 100}.{cost % 100:02d}",
                    f"{margin // 100}.{margin % 100:02d}",
                    BRANDS[int(rand() * n_brands)],
                    CATEGORIES[int(rand() * n_categories)],
                )
            )
        last_order_day = None if last_order_day < 0 else last_order_day

        # Interactions follow the same customer's activity with their own noise.
        n_inter = int(activity * interaction_scale * lognorm(0, 0.5) / 1.13 + rand())
        own_server = owner in servers
        for _ in range(n_inter):
            day = acq_day + int(rand() * span)
            at = moment(day)
            outcome = OUT[bisect_right(OUT_CUM, rand() * out_total)]
            interactions.append(
                (
                    cid,
                    owner if own_server and rand() < 0.5 else servers[int(rand() * n_servers)],
                    at,
                    ICH[bisect_right(ICH_CUM, rand() * ich_total)],
                    "inbound" if rand() < 0.75 else "outbound",
                    MINUTES[int(rand() * n_table)],
                    SUMMARIES[int(rand() * n_summaries)],
                    outcome,
                    days[min(day + 3, DAYS)] if outcome == "follow_up" else None,
                    "",
                    at,
                )
            )

        followers_total = 0
        if rand() < 0.35:
            for k in range(1 if rand() < 0.8 else 2):
                followers = min(5_000_000, int(rng.paretovariate(1.05) * 40) - 40)
                followers_total += followers
                network = NETWORKS[(cid + k) % len(NETWORKS)]
                profiles.append((cid, network, f"{first.lower()}{cid}", followers, stamp))
        influence = influence_score(followers_total)

        cancelled = drifting and rand() < 0.08
        days_since = DAYS - last_order_day if last_order_day is not None else DAYS - acq_day
        if cancelled or days_since > 180:
            status = "churned"
        elif days_since > 90:
            status = "at_risk"
        else:
            status = "active"
        rated = rand() < 0.6
        effort = min(10, max(1, int(1 + lognorm(0.9, 0.6)))) if rated else None
        created = f"{days[acq_day]} 09:00:00+00"
        birth_year = today.year - 18 - randrange(60) if rand() < 0.9 else None
        savvy = 1 + randrange(5) if rand() < 0.8 else None
        customers.append(
            (
                cid,
                f"{external_prefix}{cid:08d}",
                first,
                last,
                f"{first.lower()}.{last.lower()}.{cid}@example.com",
                f"+82-10-{randrange(10000):04d}-{randrange(10000):04d}",
                "ko" if country == "KR" and rand() < 0.8 else "en",
                rand() < 0.03,
                birth_year,
                ("female", "male", "female", "male", "other", "undisclosed")[randrange(6)],
                city,
                region,
                country,
                choice(OCCUPATIONS),
                "",
                savvy,
                choice(BROWSERS),
                choice(REFERRALS),
                days[acq_day],
                acq_channel,
                f"{cac // 100}.{cac % 100:02d}",
                effort,
                (owner or staff_ids[randrange(n_staff)]) if rated else None,
                moment(min(DAYS, acq_day + randrange(60))) if rated else None,
                influence,
                None,
                "",
                influence,
                status,
                f"{days[end_day]} 12:00:00+00" if cancelled else None,
                owner,
                created,
                created,
            )
        )
        if rand() < follow_up_share:
            chunk.follow_ups.append(
                (
                    cid,
                    owner if rand() < 0.6 else None,
                    "manual",
                    "",
                    choice(FOLLOW_UP_REASONS),
                    (today + dt.timedelta(days=randrange(-3, 7))).isoformat(),
                    "open",
                    "",
                    stamp,
                )
            )
    return chunk


def chunks(
    *, seed: int, first_id: int, count: int, staff_ids: Sequence[int], today: dt.date, **options
) -> Iterator[Chunk]:
    """The whole data set as consecutive chunks of CHUNK customers."""
    for chunk_no, offset in enumerate(range(0, count, CHUNK)):
        yield generate_chunk(
            seed=seed,
            chunk_no=chunk_no,
            first_id=first_id + offset,
            count=min(CHUNK, count - offset),
            staff_ids=staff_ids,
            today=today,
            **options,
        )


def _sqlite_value(value):
    # SQLite stores Django datetimes as naive UTC text.
    if isinstance(value, str) and value.endswith("+00") and len(value) == 22:
        return value[:-3]
    return value


def write_chunk(chunk: Chunk) -> dict[str, int]:
    """Write one chunk's rows: COPY on PostgreSQL, executemany elsewhere. Returns row counts."""
    counts = {}
    with connection.cursor() as cursor:
        for model, cols, rows in chunk.tables():
            counts[model._meta.model_name] = len(rows)
            if not rows:
                continue
            table = model._meta.db_table
            if connection.vendor == "postgresql":
                raw = cursor.cursor
                # A queued writer sends from a thread while the next rows are being formatted.
                with raw.copy(
                    f"COPY {table} ({', '.join(cols)}) FROM STDIN", writer=QueuedLibpqWriter(raw)
                ) as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join(["%s"] * len(cols))
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})",  # noqa: S608
                    [tuple(_sqlite_value(v) for v in row) for row in rows],
                )
    return counts


@contextmanager
def indexes_built_after(models: Sequence[type]) -> Iterator[None]:
    """Bulk-load trick (as pg_restore does): drop the tables' secondary indexes, let the caller
    load, then build each index once, sorted, instead of updating it row by row. Call inside a
    transaction: if anything fails the indexes come back with the rollback. PostgreSQL only.
    """
    if connection.vendor != "postgresql":
        yield
        return
    tables = [m._meta.db_table for m in models]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i "
            "WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
            "WHERE c.conindid = format('%%I.%%I', i.schemaname, i.indexname)::regclass)",
            [tables],
        )
        indexes = cursor.fetchall()
        for name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
    yield
    with connection.cursor() as cursor:
        for _name, definition in indexes:
            cursor.execute(definition)


def reset_customer_sequence() -> None:
    """After inserting explicit customer ids, move the id sequence past them (PostgreSQL)."""
    if connection.vendor != "postgresql":
        return  # SQLite's AUTOINCREMENT follows the largest id by itself
    table = Customer._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
            f"(SELECT coalesce(max(id), 1) FROM {table}))"
        )


def next_customer_id() -> int:
    last = Customer.objects.order_by("-id").values_list("id", flat=True).first()
    return (last or 0) + 1
