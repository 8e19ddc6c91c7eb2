app_name = "surveys"

urlpatterns: list = []

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
