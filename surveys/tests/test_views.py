"""Staff screens: permission matrix, builder (htmx and plain POST), campaigns, results."""

import pytest
from django.core import mail
from django.utils import timezone

from config.celery import app
from crm.tests.factories import CustomerFactory
from surveys.models import Answer, Campaign, Invitation, Question, Response, Survey

from .survey_helpers import (  # noqa: F401 - fixture
    _fresh_rate_limit,
    make_campaign,
    make_invitation,
    make_survey,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def objects():
    survey = make_survey()
    campaign = make_campaign(survey)
    return survey, campaign


def _urls(survey, campaign):
    s, c = survey.pk, campaign.pk
    q = survey.questions.first().pk
    # (method, url, support may?)
    return [
        ("get", "/surveys/", True),
        ("get", "/surveys/new/", False),
        ("get", f"/surveys/{s}/edit/", False),
        ("post", f"/surveys/{s}/questions/add/", False),
        ("get", f"/surveys/{s}/questions/{q}/edit/", False),
        ("post", f"/surveys/{s}/questions/{q}/edit/", False),
        ("post", f"/surveys/{s}/questions/{q}/remove/", False),
        ("get", f"/surveys/{s}/preview/", True),
        ("get", f"/surveys/{s}/results/", True),
        ("get", f"/surveys/{s}/verbatims/", True),
        ("get", "/surveys/campaigns/new/", False),
        ("get", f"/surveys/campaigns/{c}/", True),
        ("post", f"/surveys/campaigns/{c}/send/", False),
        ("post", f"/surveys/campaigns/{c}/remind/", False),
    ]


def test_permission_matrix(client, support_user, manager, objects):
    survey, campaign = objects
    for method, url, support_may in _urls(survey, campaign):
        client.logout()
        anonymous = getattr(client, method)(url)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/"), url
        client.force_login(support_user)
        as_support = getattr(client, method)(url)
        if support_may:
            assert as_support.status_code == 200, url
        else:
            assert as_support.status_code == 403, url
        client.force_login(manager)
        as_manager = getattr(client, method)(url)
        assert as_manager.status_code in (200, 302, 303, 400), (url, as_manager.status_code)


def test_survey_list_is_constant_in_queries(client_manager, django_assert_max_num_queries):
    for n in range(15):
        make_campaign(make_survey(title=f"S{n}"))
    with django_assert_max_num_queries(8):
        page = client_manager.get("/surveys/")
    assert page.status_code == 200 and "S14" in page.content.decode()


def test_create_survey_then_build_it_with_plain_posts(client_manager):
    created = client_manager.post("/surveys/new/", {"title_en": "Delivery", "title_ko": "배송"})
    survey = Survey.objects.get(title_en="Delivery")
    assert created.status_code == 302 and created["Location"] == f"/surveys/{survey.pk}/edit/"
    add = client_manager.post(
        f"/surveys/{survey.pk}/questions/add/",
        {"kind": "single", "text_en": "Which?", "required": "on", "options": "a | A | 에이\nb | B"},
    )
    assert add.status_code == 302
    question = Question.objects.get(survey=survey)
    assert question.options == [
        {"value": "a", "en": "A", "ko": "에이"},
        {"value": "b", "en": "B", "ko": ""},
    ]
    client_manager.post(
        f"/surveys/{survey.pk}/questions/add/", {"kind": "nps", "text_en": "Recommend?"}
    )
    assert list(survey.questions.values_list("order", flat=True)) == [1, 2]
    removed = client_manager.post(f"/surveys/{survey.pk}/questions/{question.pk}/remove/")
    assert removed.status_code == 302
    assert list(survey.questions.values_list("kind", flat=True)) == ["nps"]


def test_builder_with_htmx_returns_the_fragment(client_manager):
    survey = make_survey(kinds=["nps"])
    added = client_manager.post(
        f"/surveys/{survey.pk}/questions/add/",
        {"kind": "rating", "text_en": "Rate us", "scale_min": "1", "scale_max": "10"},
        HTTP_HX_REQUEST="true",
    )
    assert added.status_code == 200
    body = added.content.decode()
    assert "Rate us" in body and "<html" not in body
    assert survey.questions.count() == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "single", "text_en": "x", "options": "only one"}, "at least two options"),
        ({"kind": "rating", "text_en": "x"}, "needs a scale"),
        ({"kind": "rating", "text_en": "x", "scale_min": "5", "scale_max": "1"}, "must go up"),
        ({"kind": "bogus", "text_en": "x"}, "kind"),
        ({"kind": "nps", "text_en": ""}, "text_en"),
        ({"kind": "single", "text_en": "x", "options": "a\na"}, "used twice"),
    ],
)
def test_bad_questions_are_refused(client_manager, data, message):
    survey = make_survey(kinds=[])
    plain = client_manager.post(f"/surveys/{survey.pk}/questions/add/", data)
    assert plain.status_code == 400 and message in plain.content.decode()
    htmx = client_manager.post(f"/surveys/{survey.pk}/questions/add/", data, HTTP_HX_REQUEST="true")
    assert message in htmx.content.decode()
    assert not survey.questions.exists()


def test_question_with_answers_cannot_be_removed(client_manager):
    invitation, _ = make_invitation()
    survey = invitation.campaign.survey
    question = survey.questions.get(kind="nps")
    response = Response.objects.create(
        invitation=invitation,
        campaign=invitation.campaign,
        survey=survey,
        customer=invitation.customer,
    )
    Answer.objects.create(response=response, question=question, kind="nps", value_int=9)
    refused = client_manager.post(f"/surveys/{survey.pk}/questions/{question.pk}/remove/")
    assert refused.status_code == 400 and "already has answers" in refused.content.decode()
    assert Question.objects.filter(pk=question.pk).exists()


def test_preview_in_both_languages(client_support):
    survey = make_survey()
    assert "Question nps" in client_support.get(f"/surveys/{survey.pk}/preview/").content.decode()
    korean = client_support.get(f"/surveys/{survey.pk}/preview/?lang=ko").content.decode()
    assert "질문 nps" in korean and "사과" in korean


def test_campaign_from_the_customer_list_filter_and_send(
    client_manager, django_capture_on_commit_callbacks, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    survey = make_survey()
    CustomerFactory.create_batch(2, city="Gwangju")
    CustomerFactory(city="Seoul")
    form = client_manager.get(f"/surveys/campaigns/new/?survey={survey.pk}&query=city%3DGwangju")
    assert form.status_code == 200 and "city=Gwangju" in form.content.decode()
    created = client_manager.post(
        "/surveys/campaigns/new/",
        {
            "survey": survey.pk,
            "name": "Gwangju",
            "audience_kind": "filter",
            "audience_query": "city=Gwangju",
            "expiry_days": "30",
            "reminder_after_days": "7",
        },
    )
    campaign = Campaign.objects.get(name="Gwangju")
    assert created.status_code == 302
    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            sent = client_manager.post(f"/surveys/campaigns/{campaign.pk}/send/", follow=True)
    finally:
        app.conf.task_always_eager = old
    assert "2 emails queued" in sent.content.decode()
    assert len(mail.outbox) == 2
    detail = client_manager.get(f"/surveys/campaigns/{campaign.pk}/").content.decode()
    assert "response rate" in detail


def test_campaign_form_refuses_bad_input(client_manager):
    survey = make_survey()
    for data, message in [
        ({"audience_kind": "filter", "audience_query": "city=Atlantis"}, "audience is empty"),
        ({"audience_kind": "customer", "audience_customer": "999999"}, "No customer has this id"),
        ({"audience_kind": "filter", "expiry_days": "0"}, "greater than or equal to 1"),
    ]:
        body = {"survey": survey.pk, "name": "x", "expiry_days": "30", **data}
        refused = client_manager.post("/surveys/campaigns/new/", body)
        assert refused.status_code == 400, data
        assert message in refused.content.decode(), data
    assert not Campaign.objects.exists()


def _answered(campaign, customer=None, **values):
    invitation, _ = make_invitation(campaign, customer)
    response = Response.objects.create(
        invitation=invitation,
        campaign=campaign,
        survey=campaign.survey,
        customer=invitation.customer,
        unhappy=values.get("nps", 10) <= 6,
    )
    for q in campaign.survey.questions.all():
        if q.kind in values:
            value = values[q.kind]
            Answer.objects.create(
                response=response,
                question=q,
                kind=q.kind,
                value_int=value if isinstance(value, int) else None,
                value_text=value if isinstance(value, str) else "",
            )
    return response


def test_results_scores_in_sql_match_the_formulas(client_support, django_assert_max_num_queries):
    survey = make_survey(kinds=["nps", "csat", "ces", "text"])
    campaign = make_campaign(survey)
    for nps in [10, 10, 10, 9, 9, 8, 8, 7, 7, 3]:  # 50 % promoters, 10 % detractors
        _answered(campaign, nps=nps)
    _answered(campaign, csat=5, text="=cmd|' /C calc'!A0")  # NPS skipped: not in denominator
    with django_assert_max_num_queries(14):
        page = client_support.get(f"/surveys/{survey.pk}/results/")
    assert page.status_code == 200
    scores = page.context["scores"]
    assert scores.nps == 40 and scores.nps_answers == 10 and scores.responses == 11
    assert scores.csat == 100 and scores.ces is None
    assert page.context["by_bucket"][0]["nps"] == 40
    assert "trend-data" in page.content.decode()


def test_verbatims_filters_and_csv(client_support):
    survey = make_survey(kinds=["nps", "text"])
    campaign = make_campaign(survey)
    _answered(campaign, nps=2, text="Too slow")
    _answered(campaign, nps=10, text="=HYPERLINK(1)")
    page = client_support.get(f"/surveys/{survey.pk}/verbatims/?unhappy_only=on")
    body = page.content.decode()
    assert "Too slow" in body and "HYPERLINK" not in body
    csv_response = client_support.get(f"/surveys/{survey.pk}/verbatims/?export=csv")
    csv_text = b"".join(csv_response.streaming_content).decode()
    assert "Too slow" in csv_text and "'=HYPERLINK(1)" in csv_text
    bad = client_support.get(f"/surveys/{survey.pk}/verbatims/?since=2026-02-01&until=2026-01-01")
    assert bad.status_code == 400 and "must not be after" in bad.content.decode()


def test_customer_survey_history_selector(django_assert_num_queries):
    from surveys.selectors import customer_survey_history

    survey = make_survey(kinds=["nps", "csat"])
    customer = CustomerFactory()
    _answered(make_campaign(survey), customer, nps=3, csat=1)
    _answered(make_campaign(survey, name="b"), customer, nps=9)
    with django_assert_num_queries(1):
        history = list(customer_survey_history(customer))
    assert [(r.nps, r.csat) for r in history] == [(9, None), (3, 1)]
    assert history[0].survey.title_en == "Service check"


def test_invitation_stats_on_campaign_page(client_support):
    campaign = make_campaign()
    invitation, _ = make_invitation(campaign)
    make_invitation(campaign)
    Invitation.objects.filter(pk=invitation.pk).update(opened_at=timezone.now())
    _answered(campaign, nps=9)
    page = client_support.get(f"/surveys/campaigns/{campaign.pk}/")
    stats = page.context["stats"]
    assert (stats.sent, stats.opened, stats.answered) == (3, 1, 1)
    assert "33 %" in page.content.decode()


def test_nps_by_bucket_groups_by_current_bucket():
    from segments.models import Bucket, CurrentMembership
    from surveys.selectors import nps_by_bucket

    loyal = Bucket.objects.create(name="Loyal", priority=1)
    survey = make_survey(kinds=["nps"])
    campaign = make_campaign(survey)
    for score in (10, 9):
        response = _answered(campaign, nps=score)
        CurrentMembership.objects.create(
            customer=response.customer, bucket=loyal, since=timezone.localdate()
        )
    _answered(campaign, nps=0)  # no membership row: Unsegmented
    rows = {row["bucket_name"]: row for row in nps_by_bucket(survey=survey)}
    assert rows["Loyal"]["nps"] == 100 and rows["Loyal"]["responses"] == 2
    assert rows["Unsegmented"]["nps"] == -100


def test_customer_history_partial_renders():
    from django.template.loader import render_to_string

    from surveys.selectors import customer_survey_history

    customer = CustomerFactory()
    _answered(make_campaign(make_survey(kinds=["nps"])), customer, nps=2)
    html = render_to_string(
        "surveys/_customer_history.html", {"responses": customer_survey_history(customer)}
    )
    assert "unhappy" in html and "Service check" in html


def test_edit_a_question_and_keep_answered_option_values(client_manager):
    invitation, _ = make_invitation()
    survey = invitation.campaign.survey
    single = survey.questions.get(kind="single")
    url = f"/surveys/{survey.pk}/questions/{single.pk}/edit/"
    assert "a | Apples | 사과" in client_manager.get(url).content.decode()
    saved = client_manager.post(
        url, {"text_en": "Fruit?", "text_ko": "과일?", "options": "a | Apple\nb | Banana"}
    )
    assert saved.status_code == 302
    single.refresh_from_db()
    assert single.text_en == "Fruit?" and not single.required
    assert single.options[0] == {"value": "a", "en": "Apple", "ko": ""}
    response = Response.objects.create(
        invitation=invitation,
        campaign=invitation.campaign,
        survey=survey,
        customer=invitation.customer,
    )
    Answer.objects.create(response=response, question=single, kind="single", value_text="a")
    refused = client_manager.post(url, {"text_en": "Fruit?", "options": "x | X\ny | Y"})
    assert refused.status_code == 400 and "keep their values" in refused.content.decode()
    single.refresh_from_db()
    assert [o["value"] for o in single.options] == ["a", "b"]
