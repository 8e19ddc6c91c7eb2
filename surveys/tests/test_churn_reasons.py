import pytest
from django.utils import timezone

from surveys import churn_services
from surveys.churn_demo import DEMO_REASON_CODES, churn_demo_reason_codes
from surveys.models import ReasonCode
from surveys.tests.churn_helpers import churned, reason

pytestmark = pytest.mark.django_db


def test_manager_creates_a_reason_code(client_manager):
    response = client_manager.post(
        "/churn/reasons/new/",
        {
            "code": "late-parcels",
            "category": "delivery",
            "label_en": "Parcels arrived late",
            "label_ko": "배송 지연",
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    created = ReasonCode.objects.get(code="late-parcels")
    assert created.category == "delivery"
    assert created.label_ko == "배송 지연"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"code": "price", "category": "price", "label_en": "Dup"}, "code"),
        ({"code": "new one!", "category": "price", "label_en": "Bad slug"}, "code"),
        ({"code": "x", "category": "weather", "label_en": "Rain"}, "category"),
        ({"code": "y", "category": "price", "label_en": ""}, "label_en"),
    ],
)
def test_bad_reason_code_input_is_refused(client_manager, data, field):
    reason(code="price")
    response = client_manager.post("/churn/reasons/new/", data)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert ReasonCode.objects.count() == 1


def test_manager_rewords_and_deactivates_a_code(client_manager):
    code = reason()
    response = client_manager.post(
        f"/churn/reasons/{code.pk}/edit/",
        {"category": "price", "label_en": "Price too high", "label_ko": "가격이 높음"},
    )
    assert response.status_code == 302
    code.refresh_from_db()
    assert code.label_en == "Price too high"
    assert code.is_active is False
    assert code.code == "price"  # the stable key is not editable


def test_category_of_a_used_code_cannot_change(client_manager, manager):
    code = reason()
    churn_services.churn_interview_record(
        customer=churned(),
        interviewer=manager,
        recorded_by=manager,
        interviewed_on=timezone.localdate(),
        channel="phone",
        primary_reason=code,
    )
    response = client_manager.post(
        f"/churn/reasons/{code.pk}/edit/",
        {"category": "service", "label_en": "Too expensive", "is_active": "on"},
    )
    assert response.status_code == 400
    assert "category" in response.context["form"].errors
    code.refresh_from_db()
    assert code.category == "price"


def test_reason_list_shows_use_counts_in_constant_queries(
    client_support, support_user, django_assert_max_num_queries
):
    used = reason()
    for i in range(5):
        reason(code=f"spare-{i}", label_en=f"Spare {i}")
    for _ in range(3):
        churn_services.churn_interview_record(
            customer=churned(),
            interviewer=support_user,
            recorded_by=support_user,
            interviewed_on=timezone.localdate(),
            channel="phone",
            primary_reason=used,
        )
    with django_assert_max_num_queries(8):
        response = client_support.get("/churn/reasons/")
    assert response.status_code == 200
    rows = {row.record.code: row.record for row in response.context["table"].rows}
    assert rows["price"].primary_uses == 3
    assert rows["spare-0"].primary_uses == 0
    # Support may look but not edit.
    assert "/churn/reasons/new/" not in response.content.decode()


def test_demo_reason_codes_are_idempotent():
    assert churn_demo_reason_codes() == len(DEMO_REASON_CODES)
    ReasonCode.objects.filter(code="moved").update(label_en="Relocated")
    assert churn_demo_reason_codes() == 0
    assert ReasonCode.objects.count() == len(DEMO_REASON_CODES)
    assert ReasonCode.objects.get(code="moved").label_en == "Relocated"
