from django.urls import path

from . import public_views, views

app_name = "surveys"

urlpatterns: list = [
    path("surveys/", views.SurveyListView.as_view(), name="survey_list"),
    path("surveys/new/", views.SurveyCreateView.as_view(), name="survey_create"),
    path("surveys/<int:pk>/edit/", views.SurveyEditView.as_view(), name="survey_edit"),
    path("surveys/<int:pk>/questions/add/", views.QuestionAddView.as_view(), name="question_add"),
    path(
        "surveys/<int:pk>/questions/<int:question_pk>/edit/",
        views.QuestionEditView.as_view(),
        name="question_edit",
    ),
    path(
        "surveys/<int:pk>/questions/<int:question_pk>/remove/",
        views.QuestionRemoveView.as_view(),
        name="question_remove",
    ),
    path("surveys/<int:pk>/preview/", views.SurveyPreviewView.as_view(), name="survey_preview"),
    path("surveys/<int:pk>/results/", views.SurveyResultsView.as_view(), name="survey_results"),
    path("surveys/<int:pk>/verbatims/", views.VerbatimListView.as_view(), name="verbatims"),
    path("surveys/campaigns/new/", views.CampaignCreateView.as_view(), name="campaign_create"),
    path("surveys/campaigns/<int:pk>/", views.CampaignDetailView.as_view(), name="campaign_detail"),
    path(
        "surveys/campaigns/<int:pk>/send/", views.CampaignSendView.as_view(), name="campaign_send"
    ),
    path(
        "surveys/campaigns/<int:pk>/remind/",
        views.CampaignRemindView.as_view(),
        name="campaign_remind",
    ),
    # Public pages behind personal links; "answer" first: it is not a token.
    path("s/answer/", public_views.answer, name="public_answer"),
    path("s/<str:token>/", public_views.open_link, name="public_open"),
]

# --- Churn interviews ---
# isort: split
from django.urls import path as _path  # noqa: E402

from . import churn_views  # noqa: E402

urlpatterns += [
    _path("churn/", churn_views.ChurnReportView.as_view(), name="churn_report"),
    _path("churn/queue/", churn_views.ChurnQueueView.as_view(), name="churn_queue"),
    _path(
        "churn/interviews/",
        churn_views.ChurnInterviewListView.as_view(),
        name="churn_interview_list",
    ),
    _path(
        "churn/interview/<int:customer_id>/new/",
        churn_views.ChurnInterviewCreateView.as_view(),
        name="churn_interview_create",
    ),
    _path(
        "churn/interviews/<int:pk>/edit/",
        churn_views.ChurnInterviewUpdateView.as_view(),
        name="churn_interview_update",
    ),
    _path("churn/reasons/", churn_views.ReasonCodeListView.as_view(), name="reason_code_list"),
    _path(
        "churn/reasons/new/", churn_views.ReasonCodeCreateView.as_view(), name="reason_code_create"
    ),
    _path(
        "churn/reasons/<int:pk>/edit/",
        churn_views.ReasonCodeUpdateView.as_view(),
        name="reason_code_update",
    ),
]
