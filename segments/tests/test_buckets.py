"""Bucket services: validation with messages, uniqueness, versioning."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from segments import selectors
from segments.models import Bucket, BucketVersion
from segments.services import bucket_create, bucket_update
from segments.tests.factories import BucketFactory

pytestmark = pytest.mark.django_db

RULES = {"op": "and", "conditions": [{"field": "effort", "operator": ">=", "value": 7}]}


def test_create_keeps_version_one(manager):
    bucket = bucket_create(name="Whales", rules=RULES, priority=1, user=manager)
    version = BucketVersion.objects.get(bucket=bucket)
    assert (version.version, version.saved_by, version.rules) == (1, manager, RULES)


def test_bad_rule_is_refused_naming_the_condition():
    bad = {"op": "and", "conditions": [{"field": "efort", "operator": "=", "value": 1}]}
    with pytest.raises(ValidationError) as exc:
        bucket_create(name="X", rules=bad, priority=1)
    assert exc.value.message_dict["rules"] == ["Condition 1: unknown field 'efort'"]
    assert not Bucket.objects.exists()


def test_priority_collision_is_refused_with_a_message():
    BucketFactory(name="First", priority=3)
    with pytest.raises(ValidationError) as exc:
        bucket_create(name="Second", rules=RULES, priority=3)
    assert "already used by bucket 'First'" in exc.value.message_dict["priority"][0]
    assert Bucket.objects.count() == 1


def test_name_is_unique_case_insensitively():
    BucketFactory(name="Whales")
    with pytest.raises(ValidationError) as exc:
        bucket_create(name="whales", rules=RULES, priority=99)
    assert "name" in exc.value.message_dict


def test_bad_colour_is_refused():
    with pytest.raises(ValidationError) as exc:
        bucket_create(name="X", rules=RULES, priority=1, colour="red")
    assert "colour" in exc.value.message_dict


def test_priority_and_colour_are_database_constraints():
    BucketFactory(priority=5)
    with pytest.raises(IntegrityError):
        BucketFactory(priority=5)


def test_colour_is_a_database_constraint():
    with pytest.raises(IntegrityError):
        BucketFactory(colour="blue")


def test_update_versions_each_real_change(manager, support_user):
    bucket = bucket_create(name="Whales", rules=RULES, priority=1, user=manager)
    bucket_update(bucket=bucket, user=support_user, priority=2)
    bucket_update(bucket=bucket, user=manager, priority=2)  # no change: no version
    new_rules = {"op": "or", "conditions": RULES["conditions"]}
    bucket_update(bucket=bucket, user=manager, rules=new_rules)
    bucket.refresh_from_db()
    assert bucket.version == 3
    versions = list(bucket.versions.order_by("version"))
    assert [(v.version, v.priority, v.saved_by) for v in versions] == [
        (1, 1, manager),
        (2, 2, support_user),
        (3, 2, manager),
    ]
    history = selectors.bucket_history(bucket=bucket)
    assert history[0].version.version == 3
    assert history[0].rule_diff == ["- all of:", "+ any of:"]
    assert history[1].changes == ["Priority: 1 → 2"]
    assert history[2].changes == ["Created"]


def test_failed_update_leaves_bucket_unchanged():
    bucket = bucket_create(name="Whales", rules=RULES, priority=1)
    BucketFactory(name="Other", priority=2)
    with pytest.raises(ValidationError):
        bucket_update(bucket=bucket, priority=2, name="Renamed")
    bucket.refresh_from_db()
    assert (bucket.priority, bucket.name, bucket.version) == (1, "Whales", 1)
    assert BucketVersion.objects.filter(bucket=bucket).count() == 1


def test_more_than_twenty_active_buckets_warns():
    BucketFactory.create_batch(20)
    assert not selectors.too_many_active_buckets()
    BucketFactory()
    assert selectors.too_many_active_buckets()


def test_bucket_list_counts_members():
    from crm.tests.factories import CustomerFactory
    from segments.services import memberships_refresh

    bucket = BucketFactory(priority=1)
    CustomerFactory.create_batch(2, service_effort=9)
    CustomerFactory(service_effort=1)
    import datetime as dt

    memberships_refresh(as_of=dt.date(2026, 1, 1))
    assert selectors.bucket_list().get(pk=bucket.pk).member_count == 2
    assert selectors.unsegmented_count() == 1


def test_create_demo_buckets_is_idempotent_and_valid():
    from django.core.management import call_command

    BucketFactory(name="Taken", priority=1)
    call_command("create_demo_buckets", verbosity=0)
    count = Bucket.objects.count()
    assert count == 21
    assert Bucket.objects.get(name="Whales").priority == 2  # 1 was taken: next free number
    call_command("create_demo_buckets", verbosity=0)
    assert Bucket.objects.count() == count
    assert BucketVersion.objects.filter(bucket__name="Whales").count() == 1
    import datetime as dt

    from segments.services import memberships_refresh

    assert "counts" in memberships_refresh(as_of=dt.date(2026, 1, 1))
