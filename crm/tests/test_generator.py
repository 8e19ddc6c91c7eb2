"""crm.generator and generate_reference_data: deterministic, realistic shape, COPY path."""

import datetime as dt
import hashlib
import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from crm import generator
from crm.management.commands import generate_reference_data as command
from crm.models import Customer, Interaction, Order, SocialProfile, User

TODAY = dt.date(2026, 6, 30)


def chunk_digest(**kwargs) -> str:
    chunk = generator.generate_chunk(
        chunk_no=0, first_id=1, count=300, staff_ids=[1, 2, 3], today=TODAY, **kwargs
    )
    return hashlib.sha256(repr(chunk.tables()).encode()).hexdigest()


def test_generation_is_deterministic_for_a_seed():
    assert chunk_digest(seed=7) == chunk_digest(seed=7)
    assert chunk_digest(seed=7) != chunk_digest(seed=8)


def test_shape_is_skewed_and_long_tailed():
    rows = list(generator.chunks(seed=3, first_id=1, count=6000, staff_ids=[1, 2], today=TODAY))
    customers = [c for ch in rows for c in ch.customers]
    orders = [o for ch in rows for o in ch.orders]
    interactions = [i for ch in rows for i in ch.interactions]
    assert len(customers) == 6000
    assert 4 <= len(orders) / 6000 <= 6
    assert 8 <= len(interactions) / 6000 <= 12
    per_customer: dict[int, int] = {}
    for order in orders:
        per_customer[order[0]] = per_customer.get(order[0], 0) + 1
    top = sorted(per_customer.values(), reverse=True)[:600]  # top 10 % of customers
    assert sum(top) / len(orders) > 0.3
    followers = sorted(p[3] for ch in rows for p in ch.profiles)
    assert followers[-1] > 100 * max(1, followers[len(followers) // 2])
    first_day = (TODAY - dt.timedelta(days=generator.DAYS)).isoformat()
    assert all(first_day <= o[2][:10] <= TODAY.isoformat() for o in orders)
    assert all(1 <= i[5] <= 1440 for i in interactions)
    # margin = revenue - cost holds exactly, even in SQLite's floating point
    assert all(float(o[4]) - float(o[5]) == float(o[6]) for o in orders)


def db_digest() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT md5(string_agg(concat_ws('|', c.external_id, c.first_name, c.owner_id, "
            "c.status, o.placed_at, o.revenue, o.margin), ',' ORDER BY c.id, o.placed_at, o.id)) "
            "FROM crm_customer c LEFT JOIN crm_order o ON o.customer_id = c.id"
        )
        return cursor.fetchone()[0]


def index_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename IN "
            "('crm_customer', 'crm_order', 'crm_interaction', 'crm_socialprofile')"
        )
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.django_db
def test_command_writes_the_data_set_deterministically():
    indexes = index_names()
    args = ["--customers", "400", "--seed", "11", "--today", TODAY.isoformat()]
    out = io.StringIO()
    call_command("generate_reference_data", *args, stdout=out, verbosity=0)
    assert "Generated 400 customer" in out.getvalue()
    counts = (
        Customer.objects.count(),
        Order.objects.count(),
        Interaction.objects.count(),
        SocialProfile.objects.count(),
    )
    assert counts[0] == 400 and counts[1] > 1000 and counts[2] > 2000 and counts[3] > 50
    assert User.objects.filter(username__startswith="staff").count() == command.STAFF
    assert Customer.objects.filter(owner__isnull=True).exists()
    digest = db_digest()
    assert index_names() == indexes  # dropped for the load, built again after it

    with pytest.raises(CommandError, match="already holds customers"):
        call_command("generate_reference_data", *args, verbosity=0)

    Customer.objects.all().delete()
    call_command("generate_reference_data", *args, stdout=io.StringIO(), verbosity=0)
    assert db_digest() == digest
    assert (
        Customer.objects.count(),
        Order.objects.count(),
        Interaction.objects.count(),
        SocialProfile.objects.count(),
    ) == counts
    # the id sequence moved past the explicit ids
    assert Customer.objects.create(first_name="Next").id == 401


@pytest.mark.django_db
def test_command_refuses_large_sets_on_sqlite(monkeypatch):
    monkeypatch.setattr(connection, "vendor", "sqlite")
    with pytest.raises(CommandError, match="at most 20,000"):
        call_command("generate_reference_data", "--customers", "20001", verbosity=0)
