"""seed_demo: demo users with one-time passwords, realistic data, a no-op the second time."""

import io
import re

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from crm import roles
from crm.management.commands import seed_demo
from crm.models import (
    Customer,
    CustomerMetrics,
    FollowUp,
    Interaction,
    Order,
    SocialProfile,
    User,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_other_apps(monkeypatch):
    """Only crm's own metrics refresh runs after loading (segments is tested elsewhere)."""
    monkeypatch.setattr(seed_demo, "get_commands", dict)


def run() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out, stderr=io.StringIO(), verbosity=0)
    return out.getvalue()


def test_seed_demo_creates_users_and_data_then_is_a_no_op(no_other_apps):
    output = run()
    passwords = dict(re.findall(r"^  (\w+)\s+(\S{16})$", output, re.MULTILINE))
    assert set(passwords) == {"admin", "manager", "support1", "support2"}
    assert len(set(passwords.values())) == 4
    for username, password in passwords.items():
        assert authenticate(username=username, password=password).username == username
    assert User.objects.get(username="admin").is_superuser
    assert User.objects.get(username="manager").groups.filter(name=roles.MANAGERS).exists()
    assert User.objects.get(username="support1").groups.filter(name=roles.SUPPORT).exists()

    assert Customer.objects.count() == seed_demo.DEMO_CUSTOMERS
    assert Customer.objects.filter(owner__isnull=True).exists()
    assert Customer.objects.filter(owner__isnull=False).exists()
    assert Customer.objects.filter(cancelled_at__isnull=False).exists()
    assert Order.objects.count() > 3 * seed_demo.DEMO_CUSTOMERS
    supporters = set(Interaction.objects.values_list("staff__username", flat=True).distinct())
    assert supporters == {"support1", "support2"}
    assert SocialProfile.objects.exists()
    assert FollowUp.objects.filter(status="open").count() >= 3
    assert CustomerMetrics.objects.count() == seed_demo.DEMO_CUSTOMERS  # metrics refreshed

    counts = (Customer.objects.count(), Order.objects.count(), Interaction.objects.count())
    second = run()
    assert "reusing the data" in second
    assert not re.search(r"^  admin\s+\S{16}$", second, re.MULTILINE)
    assert (Customer.objects.count(), Order.objects.count(), Interaction.objects.count()) == counts


def test_seed_demo_keeps_existing_users_passwords(no_other_apps, admin_user):
    output = run()
    assert "admin      (existed already; password unchanged)" in output
    assert authenticate(username="admin", password="pw-for-tests-1") is not None


def test_seed_demo_calls_segments_commands_when_they_exist(monkeypatch):
    called = []
    monkeypatch.setattr(
        seed_demo,
        "get_commands",
        lambda: {"create_demo_buckets": "segments", "recalculate_roi": "segments"},
    )
    monkeypatch.setattr(seed_demo, "call_command", lambda name, **kw: called.append(name))
    call_command("seed_demo", "--customers", "20", stdout=io.StringIO(), verbosity=0)
    assert called == ["create_demo_buckets", "recalculate_roi"]
    assert CustomerMetrics.objects.count() == 0  # the ROI job refreshes metrics itself


def test_seed_demo_survives_a_failing_roi_job(monkeypatch):
    def fail(name, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(seed_demo, "get_commands", lambda: {"recalculate_roi": "segments"})
    monkeypatch.setattr(seed_demo, "call_command", fail)
    err = io.StringIO()
    call_command("seed_demo", "--customers", "20", stdout=io.StringIO(), stderr=err, verbosity=0)
    assert "recalculate_roi failed (boom)" in err.getvalue()
    assert Customer.objects.count() == 20
    assert CustomerMetrics.objects.count() == 20  # fell back to the metrics refresh
