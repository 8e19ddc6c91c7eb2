"""Customer-page panels that come from the apps above crm (segments, surveys).

crm's models, services and selectors never import segments or surveys (crm <- segments <-
surveys); a screen that combines apps may call their selectors, so those imports live here,
in the view layer, and nowhere else in crm. Each panel costs a fixed number of queries
whatever the customer's history, and none at all when the user may not see it.
"""

from __future__ import annotations

from django.db.models import Prefetch

from crm.models import Customer, CustomerStatus

SURVEY_RESPONSES_SHOWN = 20

SURVEY_PERMISSION = "surveys.view_results"
CHURN_VIEW_PERMISSION = "surveys.view_churninterview"
CHURN_ADD_PERMISSION = "surveys.add_churninterview"
CHURN_CHANGE_PERMISSION = "surveys.change_churninterview"


def survey_history(*, customer: Customer) -> dict:
    """The customer's finished survey responses, newest first: survey, campaign, date, NPS,
    CSAT and CES (None where not asked or skipped), the free-text answers (`verbatims`),
    whether the response was unhappy and, after an unhappy one, whether this one recovered.
    Two queries."""
    from surveys.models import Answer, QuestionKind
    from surveys.selectors import customer_survey_history

    verbatims = (
        Answer.objects.filter(kind=QuestionKind.TEXT)
        .exclude(value_text="")
        .select_related("question")
        .order_by("question__order", "id")
    )
    responses = list(
        customer_survey_history(customer).prefetch_related(
            Prefetch("answers", queryset=verbatims, to_attr="verbatims")
        )[: SURVEY_RESPONSES_SHOWN + 1]
    )
    shown = responses[:SURVEY_RESPONSES_SHOWN]
    latest = shown[0] if shown else None
    # "Recovered" compares with the response before: the latest one tells where things stand.
    if latest is None or latest.recovered is None:
        recovery = "unhappy" if latest is not None and latest.unhappy else None
    else:
        recovery = "recovered" if latest.recovered else "still_unhappy"
    return {
        "responses": shown,
        "more": len(responses) > SURVEY_RESPONSES_SHOWN,
        "recovery": recovery,
    }


def churn_interviews(*, customer: Customer, user) -> dict:
    """The customer's churn interview (one at most, by constraint) and whether staff can
    record one now: only for a customer who left (churned or cancelled). One query."""
    from surveys.churn_selectors import churn_interviews_for_customer

    interviews = list(churn_interviews_for_customer(customer_id=customer.pk))
    left = customer.status == CustomerStatus.CHURNED or customer.cancelled_at is not None
    return {
        "interviews": interviews,
        "customer_left": left,
        "can_add": left and not interviews and user.has_perm(CHURN_ADD_PERMISSION),
        "can_change": user.has_perm(CHURN_CHANGE_PERMISSION),
    }


def customer_panels(*, customer: Customer, user) -> dict:
    """Context for the customer page's cross-app panels; a panel the user may not see is None.

    The bucket panel (current bucket, why, history) is segments' own inclusion tag
    {% customer_buckets %} (one query), rendered by the template.
    """
    return {
        "survey_panel": survey_history(customer=customer)
        if user.has_perm(SURVEY_PERMISSION)
        else None,
        "churn_panel": churn_interviews(customer=customer, user=user)
        if user.has_perm(CHURN_VIEW_PERMISSION)
        else None,
    }
