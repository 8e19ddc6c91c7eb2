"""Two simultaneous submissions for one customer: the database's unique constraint decides, and
the loser gets a ValidationError (a form error), never an IntegrityError (a 500)."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from crm.tests.factories import SupportUserFactory
from surveys import churn_services
from surveys.models import ChurnInterview
from surveys.tests.churn_helpers import churned, reason


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_interviews_of_one_customer_one_wins():
    user = SupportUserFactory(username="racer")
    customer = churned()
    code = reason()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    real_full_clean = ChurnInterview.full_clean

    def full_clean_then_wait(self, *args, **kwargs):
        # Both threads pass validation before either inserts: a check-first design would let
        # both through; only the constraint can stop the second.
        real_full_clean(self, *args, **kwargs)
        barrier.wait(timeout=10)

    def submit():
        try:
            churn_services.churn_interview_record(
                customer=customer,
                interviewer=user,
                recorded_by=user,
                interviewed_on=timezone.localdate(),
                channel="phone",
                primary_reason=code,
            )
            outcomes.append("saved")
        except ValidationError as error:
            outcomes.append("refused: " + " ".join(error.messages))
        except Exception as error:  # noqa: BLE001 - the test reports any other failure
            outcomes.append(f"crashed: {error!r}")
        finally:
            connection.close()

    ChurnInterview.full_clean = full_clean_then_wait
    try:
        threads = [threading.Thread(target=submit) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
    finally:
        ChurnInterview.full_clean = real_full_clean

    assert sorted(o.split(":")[0] for o in outcomes) == ["refused", "saved"], outcomes
    assert "already has a churn interview" in next(o for o in outcomes if o.startswith("refused"))
    assert ChurnInterview.objects.filter(customer=customer).count() == 1
