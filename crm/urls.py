from django.urls import path

from .views import accounts, customers, imports, my

app_name = "crm"

urlpatterns = [
    path("customers/", customers.CustomerListView.as_view(), name="customer_list"),
    path("customers/<int:pk>/", customers.CustomerDetailView.as_view(), name="customer_detail"),
    path("customers/<int:pk>/effort/", customers.EffortRateView.as_view(), name="customer_effort"),
    path(
        "customers/<int:pk>/influence/",
        customers.InfluenceOverrideView.as_view(),
        name="customer_influence",
    ),
    path(
        "customers/<int:pk>/social/",
        customers.SocialProfileAddView.as_view(),
        name="social_profile_add",
    ),
    path(
        "customers/<int:pk>/social/<int:profile_id>/",
        customers.SocialProfileEditView.as_view(),
        name="social_profile_edit",
    ),
    path(
        "customers/<int:pk>/social/<int:profile_id>/delete/",
        customers.SocialProfileDeleteView.as_view(),
        name="social_profile_delete",
    ),
    path(
        "customers/<int:pk>/interactions/",
        customers.InteractionLogView.as_view(),
        name="interaction_log",
    ),
    path(
        "customers/<int:pk>/cancel/", customers.CustomerCancelView.as_view(), name="customer_cancel"
    ),
    path("customers/<int:pk>/owner/", customers.OwnerAssignView.as_view(), name="customer_owner"),
    path("my/", my.MyWorkView.as_view(), name="my_work"),
    path("my/follow-ups/<int:pk>/done/", my.FollowUpDoneView.as_view(), name="follow_up_done"),
    path("accounts/high-value/", accounts.HighValueView.as_view(), name="high_value"),
    path(
        "accounts/high-value/assign/", accounts.BulkAssignView.as_view(), name="high_value_assign"
    ),
    path("accounts/high-value/even-out/", accounts.EvenOutView.as_view(), name="even_out"),
    path("import/", imports.ImportView.as_view(), name="import"),
]
