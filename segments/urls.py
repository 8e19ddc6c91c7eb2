from django.urls import path

from . import views

app_name = "segments"

urlpatterns = [
    path("", views.BucketListView.as_view(), name="bucket_list"),
    path("new/", views.BucketEditView.as_view(), name="bucket_create"),
    path("preview/", views.BucketPreviewView.as_view(), name="bucket_preview"),
    path("<int:pk>/", views.BucketDetailView.as_view(), name="bucket_detail"),
    path("<int:pk>/edit/", views.BucketEditView.as_view(), name="bucket_edit"),
]

# --- ROI screens (engineer C2) ---
from . import views_roi  # noqa: E402

urlpatterns += [
    path("roi/", views_roi.RoiDashboardView.as_view(), name="roi_dashboard"),
    path("roi/recalculate/", views_roi.RoiRecalculateView.as_view(), name="roi_recalculate"),
    path("negative/", views_roi.NegativeContributionView.as_view(), name="negative"),
    path("cohorts/", views_roi.CohortsView.as_view(), name="cohorts"),
]
