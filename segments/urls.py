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
