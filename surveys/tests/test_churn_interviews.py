import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.utils import timezone

from crm.models import CustomerStatus, FollowUp
from crm.tests.factories import CustomerFactory, SupportUserFactory
from surveys import churn_services
from surveys.models import ChurnInterview, ChurnSecondaryReason, ReasonCategory
from surveys.tests.churn_helpers import churned, reason

pytestmark = pytest.mark.django_db


def _url(customer):
    return f"/churn/interview/{customer.pk}/new/"


def _post_data(primary, **overrides):
    data = {
        "interviewer": "",
        "interviewed_on": timezone.localdate().isoformat(),
        "channel": "phone",
        "primary_reason": primary.pk,
        "competitor": "ShopCo",
        "verbatim": "Prices went up twice this year.",
        "liked": "Friendly staff",
        "bring_back": "A loyalty discount",
        "likelihood_to_return": "6",
        "winback_offer": "",
        "winback_outcome": "none",
        "follow_up_on": "",
    }
    data.update(overrides)
    return data


def _record(customer, user, primary, **kwargs):
    values = {
        "interviewed_on": timezone.localdate(),
        "channel": "phone",
        "primary_reason": primary,
    }
    values.update(kwargs)
    return churn_services.churn_interview_record(
        customer=customer, interviewer=user, recorded_by=user, **values
    )


def test_form_defaults_interviewer_to_current_user(client_support, support_user):
    customer = churned()
    response = client_support.get(_url(customer))
    assert response.status_code == 200
    assert response.context["form"].initial["interviewer"] == support_user.pk


def test_recording_an_interview_saves_everything_and_a_follow_up(client_support, support_user):
    customer = churned()
    price = reason()
    service = reason(code="service", category=ReasonCategory.SERVICE, label_en="Rude staff")
    other = reason(code="moved", category=ReasonCategory.NO_LONGER_NEEDS, label_en="Moved")
    due = timezone.localdate() + dt.timedelta(days=3)

    response = client_support.post(
        _url(customer),
        _post_data(
            price,
            interviewer=support_user.pk,
            secondary_reasons=[service.pk, other.pk],
            winback_offer="20 % off next order",
            winback_outcome="pending",
            follow_up_on=due.isoformat(),
        ),
    )

    assert response.status_code == 302
    interview = ChurnInterview.objects.get(customer=customer)
    assert interview.interviewer == support_user
    assert interview.created_by == support_user
    assert interview.likelihood_to_return == 6
    assert interview.primary_reason_label_en == "Too expensive"
    assert set(interview.secondary_reasons.values_list("code", flat=True)) == {"service", "moved"}
    assert interview.winback_outcome == "pending"
    follow_up = FollowUp.objects.get(customer=customer)
    assert follow_up.assigned_to == support_user
    assert follow_up.due_on == due
    assert follow_up.status == "open"
    assert interview.follow_up == follow_up


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("likelihood_to_return", "11"),
        ("likelihood_to_return", "-1"),
        ("likelihood_to_return", "x"),
        ("primary_reason", "999999"),
        ("secondary_reasons", "999999"),
        ("interviewed_on", "2026-13-45"),
        ("interviewed_on", "yesterday"),
        ("follow_up_on", "31/02/2026"),
        ("channel", "pigeon"),
        ("interviewer", "999999"),
        ("winback_outcome", "maybe"),
    ],
)
def test_bad_input_is_shown_on_the_form_and_nothing_is_saved(
    client_support, support_user, field, value
):
    customer = churned()
    data = _post_data(reason(), interviewer=support_user.pk, follow_up_on="2099-01-01")
    data[field] = value

    response = client_support.post(_url(customer), data)

    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not ChurnInterview.objects.exists()
    assert not FollowUp.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"winback_offer": "Free delivery", "winback_outcome": "none"}, "winback_outcome"),
        ({"winback_offer": "", "winback_outcome": "accepted"}, "winback_offer"),
        ({"interviewed_on": "2099-01-01"}, "interviewed_on"),
        ({"follow_up_on": "2000-01-01"}, "follow_up_on"),
    ],
)
def test_inconsistent_input_is_refused_with_a_message(
    client_support, support_user, overrides, field
):
    customer = churned()
    primary = reason()
    response = client_support.post(
        _url(customer), _post_data(primary, interviewer=support_user.pk, **overrides)
    )
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert not ChurnInterview.objects.exists()


def test_primary_reason_cannot_also_be_secondary(client_support, support_user):
    customer = churned()
    primary = reason()
    response = client_support.post(
        _url(customer),
        _post_data(primary, interviewer=support_user.pk, secondary_reasons=[primary.pk]),
    )
    assert response.status_code == 400
    assert response.context["form"].errors["secondary_reasons"]
    assert not ChurnInterview.objects.exists()


def test_deactivated_reason_is_not_offered(client_support, support_user):
    customer = churned()
    old = reason(is_active=False)
    response = client_support.post(_url(customer), _post_data(old, interviewer=support_user.pk))
    assert response.status_code == 400
    assert "primary_reason" in response.context["form"].errors
    assert not ChurnInterview.objects.exists()


def test_active_customer_cannot_be_interviewed(client_support, support_user):
    customer = CustomerFactory(status=CustomerStatus.ACTIVE)
    response = client_support.post(
        _url(customer), _post_data(reason(), interviewer=support_user.pk)
    )
    assert response.status_code == 400
    assert "neither churned nor been cancelled" in str(response.context["form"].non_field_errors())
    assert not ChurnInterview.objects.exists()


def test_unknown_customer_is_404(client_support):
    assert client_support.get("/churn/interview/999999/new/").status_code == 404


def test_second_interview_of_a_customer_is_refused(client_support, support_user):
    customer = churned()
    primary = reason()
    _record(customer, support_user, primary)
    response = client_support.post(_url(customer), _post_data(primary, interviewer=support_user.pk))
    assert response.status_code == 400
    assert "already exists" in str(response.context["form"].non_field_errors())
    assert ChurnInterview.objects.count() == 1


def test_existing_interview_redirects_new_form_to_edit(client_support, support_user):
    customer = churned()
    interview = _record(customer, support_user, reason())
    response = client_support.get(_url(customer))
    assert response.status_code == 302
    assert response.url == f"/churn/interviews/{interview.pk}/edit/"


def test_likelihood_range_is_a_database_constraint(support_user):
    customer = churned()
    primary = reason()
    with pytest.raises(IntegrityError):
        ChurnInterview.objects.create(
            customer=customer,
            interviewer=support_user,
            interviewed_on=timezone.localdate(),
            channel="phone",
            primary_reason=primary,
            primary_reason_label_en="x",
            likelihood_to_return=11,
        )


def test_used_reason_code_cannot_be_deleted(support_user):
    from django.db.models import ProtectedError

    primary = reason()
    _record(churned(), support_user, primary)
    with pytest.raises(ProtectedError):
        primary.delete()


def test_rewording_a_reason_never_relabels_old_interviews(support_user):
    primary = reason(label_en="Too expensive", label_ko="너무 비쌈")
    secondary = reason(code="svc", category=ReasonCategory.SERVICE, label_en="Slow answers")
    old = _record(churned(), support_user, primary, secondary_reasons=[secondary])

    churn_services.reason_code_update(
        reason=primary,
        category=primary.category,
        label_en="Price higher than competitors",
        label_ko="경쟁사보다 비쌈",
        is_active=True,
    )
    churn_services.reason_code_update(
        reason=secondary,
        category=secondary.category,
        label_en="Waited too long",
        label_ko="",
        is_active=True,
    )
    new = _record(churned(), support_user, primary)

    old.refresh_from_db()
    assert old.primary_reason_label == "Too expensive"
    assert old.primary_reason_label_ko == "너무 비쌈"
    assert ChurnSecondaryReason.objects.get(interview=old).label == "Slow answers"
    assert new.primary_reason_label == "Price higher than competitors"
    # Both still count under the one stable code.
    assert set(primary.primary_interviews.values_list("pk", flat=True)) == {old.pk, new.pk}


def test_editing_keeps_old_wording_and_moves_the_follow_up(client_support, support_user):
    primary = reason(label_en="Too expensive")
    secondary = reason(code="svc", category=ReasonCategory.SERVICE, label_en="Slow answers")
    customer = churned()
    interview = _record(
        customer,
        support_user,
        primary,
        secondary_reasons=[secondary],
        follow_up_on=timezone.localdate() + dt.timedelta(days=1),
    )
    churn_services.reason_code_update(
        reason=primary, category="price", label_en="Reworded", label_ko="", is_active=False
    )
    colleague = SupportUserFactory(username="colleague")
    later = timezone.localdate() + dt.timedelta(days=7)

    response = client_support.post(
        f"/churn/interviews/{interview.pk}/edit/",
        _post_data(
            primary,
            interviewer=colleague.pk,
            secondary_reasons=[secondary.pk],
            likelihood_to_return="9",
            follow_up_on=later.isoformat(),
        ),
    )

    assert response.status_code == 302, response.context["form"].errors
    interview.refresh_from_db()
    assert interview.likelihood_to_return == 9
    assert interview.primary_reason_label_en == "Too expensive"  # kept though code deactivated
    assert interview.interviewer == colleague
    follow_up = FollowUp.objects.get(customer=customer)  # moved, not duplicated
    assert follow_up.due_on == later
    assert follow_up.assigned_to == colleague


def test_edit_form_renders_with_current_values(client_support, support_user):
    interview = _record(churned(), support_user, reason(), likelihood_to_return=3)
    response = client_support.get(f"/churn/interviews/{interview.pk}/edit/")
    assert response.status_code == 200
    assert response.context["form"].initial["likelihood_to_return"] == 3
    assert "Too expensive" in response.content.decode()


def test_service_refuses_deactivated_reason():
    user = SupportUserFactory(username="s1")
    with pytest.raises(ValidationError) as exc:
        _record(churned(), user, reason(is_active=False))
    assert "primary_reason" in exc.value.message_dict
    assert not ChurnInterview.objects.exists()


def test_interview_list_is_constant_in_queries(
    client_support, support_user, django_assert_max_num_queries
):
    primary = reason()
    for _ in range(20):
        _record(churned(), support_user, primary)
    with django_assert_max_num_queries(8):
        response = client_support.get("/churn/interviews/")
    assert response.status_code == 200
    assert len(response.context["table"].page.object_list) == 20


def test_saving_with_unchanged_follow_up_date_leaves_a_reassigned_follow_up_alone(
    client_support, support_user
):
    customer = churned()
    due = timezone.localdate() + dt.timedelta(days=2)
    interview = _record(customer, support_user, reason(), follow_up_on=due)
    other = SupportUserFactory(username="other")
    FollowUp.objects.filter(customer=customer).update(assigned_to=other)

    response = client_support.post(
        f"/churn/interviews/{interview.pk}/edit/",
        _post_data(interview.primary_reason, interviewer=support_user.pk, follow_up_on=due),
    )

    assert response.status_code == 302
    follow_up = FollowUp.objects.get(customer=customer)
    assert follow_up.assigned_to == other
    assert follow_up.due_on == due


def test_clearing_the_follow_up_date_keeps_the_follow_up(client_support, support_user):
    customer = churned()
    due = timezone.localdate() + dt.timedelta(days=2)
    interview = _record(customer, support_user, reason(), follow_up_on=due)
    response = client_support.post(
        f"/churn/interviews/{interview.pk}/edit/",
        _post_data(interview.primary_reason, interviewer=support_user.pk, follow_up_on=""),
    )
    assert response.status_code == 302
    assert FollowUp.objects.filter(customer=customer, status="open").count() == 1


def test_interview_list_filters_by_category_outcome_and_date(client_support, support_user):
    price = reason()
    service = reason(code="svc", category=ReasonCategory.SERVICE, label_en="Rude staff")
    a = _record(churned(), support_user, price, interviewed_on=dt.date(2026, 3, 1))
    b = _record(
        churned(),
        support_user,
        service,
        interviewed_on=dt.date(2026, 4, 1),
        winback_offer="Voucher",
        winback_outcome="accepted",
    )

    def ids(params):
        response = client_support.get("/churn/interviews/", params)
        assert response.status_code == 200
        return [row.record.pk for row in response.context["table"].page.object_list]

    assert ids({"category": "price"}) == [a.pk]
    assert ids({"winback_outcome": "accepted"}) == [b.pk]
    assert ids({"interviewed_from": "2026-03-15"}) == [b.pk]
    assert ids({"primary_reason": service.pk}) == [b.pk]
    assert ids({"interviewed_from": "not-a-date"}) == []
