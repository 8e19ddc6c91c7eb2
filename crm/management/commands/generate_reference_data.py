"""Generate the reference data set: `manage.py generate_reference_data --customers N --seed S`.

Customers with demographics, ratings, owners among 50 staff users, long-tailed social profiles,
about 5 orders and 10 interactions per customer (skewed), over two years, written with COPY in
chunks (constant memory), in one transaction. Deterministic for a seed and a --today date.
Then `create_demo_buckets` when the segments app provides it.
"""

import datetime as dt
import time

from django.contrib.auth.models import Group
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from tqdm import tqdm

from crm import generator, roles
from crm.models import Customer, Interaction, Order, SocialProfile, User

SQLITE_LIMIT = 20_000
STAFF = 50
MANAGERS = 5


def ensure_reference_staff(count: int = STAFF) -> list[int]:
    """staff01..staffNN (the first MANAGERS are managers), created when missing; their ids."""
    names = [f"staff{i:02d}" for i in range(1, count + 1)]
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    new = []
    for i, name in enumerate(names, start=1):
        if name in existing:
            continue
        user = User(
            username=name,
            first_name=generator.FIRST_NAMES[i % len(generator.FIRST_NAMES)],
            last_name=generator.LAST_NAMES[i % len(generator.LAST_NAMES)],
            email=f"{name}@example.com",
            hourly_cost=None if i % 3 else 30 + i,
        )
        user.set_unusable_password()
        new.append(user)
    User.objects.bulk_create(new)
    support, managers = (
        Group.objects.get(name=roles.SUPPORT),
        Group.objects.get(name=roles.MANAGERS),
    )
    ids = dict(User.objects.filter(username__in=names).values_list("username", "id"))
    for user in new:
        group = managers if names.index(user.username) < MANAGERS else support
        group.user_set.add(ids[user.username])
    return [ids[name] for name in names]


def skip_row_triggers() -> bool:
    """Like pg_restore --disable-triggers: skip the per-row foreign-key triggers for the rest
    of this transaction. The generator only writes ids it created, so the keys are valid by
    construction. Needs a role allowed to set session_replication_role (a superuser, as in
    make bench); elsewhere it quietly keeps the checks.
    """
    if connection.vendor != "postgresql":
        return False
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
    except DatabaseError:
        return False
    return True


class Command(BaseCommand):
    help = "Generate a realistic, deterministic reference data set (PostgreSQL COPY)."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=1_000_000)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--today",
            type=dt.date.fromisoformat,
            default=None,
            help="Last day of the two-year history (default today); fixes the output for a seed.",
        )
        parser.add_argument(
            "--keep-triggers",
            action="store_true",
            help="Check every foreign key row by row even when allowed to skip it (slower).",
        )

    def handle(self, *args, customers, seed, today, keep_triggers=False, verbosity=1, **options):
        if customers < 1:
            raise CommandError("--customers must be at least 1.")
        if connection.vendor != "postgresql" and customers > SQLITE_LIMIT:
            raise CommandError(
                f"On {connection.vendor} at most {SQLITE_LIMIT:,} customers; "
                "set DATABASE_URL to a PostgreSQL database for more."
            )
        if Customer.objects.exists():
            raise CommandError(
                "The database already holds customers; generate reference data into an empty one."
            )
        today = today or timezone.localdate()
        start = time.perf_counter()
        totals: dict[str, int] = {}
        with transaction.atomic():
            fast = not keep_triggers and skip_row_triggers()
            staff_ids = ensure_reference_staff()
            big = [Customer, Order, Interaction, SocialProfile]
            with (
                generator.indexes_built_after(big),
                tqdm(total=customers, unit=" customers", disable=verbosity < 1) as bar,
            ):
                for chunk in generator.chunks(
                    seed=seed, first_id=1, count=customers, staff_ids=staff_ids, today=today
                ):
                    for name, n in generator.write_chunk(chunk).items():
                        totals[name] = totals.get(name, 0) + n
                    bar.update(len(chunk.customers))
            generator.reset_customer_sequence()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        seconds = time.perf_counter() - start
        figures = ", ".join(f"{n:,} {name}" for name, n in totals.items())
        how = "foreign keys valid by construction" if fast else "foreign keys checked per row"
        self.stdout.write(self.style.SUCCESS(f"Generated {figures} in {seconds:.1f} s ({how})."))
        if "create_demo_buckets" in get_commands():
            call_command("create_demo_buckets", verbosity=verbosity)
