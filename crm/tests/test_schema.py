"""The migrated database has every constraint and index the models declare.

Migration state and database can drift apart: Django's AlterField to db_index=False drops
every single-column index on the column that Meta.indexes does not name, partial unique
constraints included (segments 0006 lost "one open membership per customer" that way, with
makemigrations --check still clean).
"""

import datetime as dt

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, transaction

from crm.models import Customer
from crm.tests.factories import CustomerFactory
from segments.models import BucketMembership

pytestmark = pytest.mark.django_db


def test_every_model_constraint_and_index_exists_in_the_database():
    missing = []
    with connection.cursor() as cursor:
        for model in apps.get_models():
            if not model._meta.managed or model._meta.proxy:
                continue
            table = model._meta.db_table
            existing = connection.introspection.get_constraints(cursor, table)
            for item in [*model._meta.constraints, *model._meta.indexes]:
                if item.name not in existing:
                    missing.append(f"{table}.{item.name}")
    assert missing == []


def test_a_customer_has_at_most_one_open_membership():
    customer = CustomerFactory()
    day = dt.date(2026, 1, 1)
    BucketMembership.objects.create(customer=customer, bucket=None, entered_on=day)
    BucketMembership.objects.create(
        customer=customer, bucket=None, entered_on=day, left_on=day
    )  # closed rows are history: any number
    with pytest.raises(IntegrityError), transaction.atomic():
        BucketMembership.objects.create(customer=customer, bucket=None, entered_on=day)


def _hot_updates(table: str) -> int:
    with connection.cursor() as cursor:  # this transaction's counts, before any stats flush
        cursor.execute("SELECT pg_stat_get_xact_tuples_hot_updated(%s::regclass)", [table])
        return cursor.fetchone()[0]


def test_a_status_change_is_a_hot_update():
    """The nightly job copies each status it moves into crm_customer (crm.metrics): with the
    status in no index and room on the page (fill factor 90, migration 0014), the new row
    version stays on its page and writes no index entry. An index on the status, or a
    packed table, would make every copy write all of the table's indexes again."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE oid = 'crm_customer'::regclass")
        assert cursor.fetchone()[0] == ["fillfactor=90"]
    customers = CustomerFactory.create_batch(3, status="active")
    before = _hot_updates("crm_customer")
    Customer.objects.filter(pk__in=[c.pk for c in customers]).update(status="at_risk")
    assert _hot_updates("crm_customer") - before == 3
