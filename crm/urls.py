from django.urls import path

from .views import customers

app_name = "crm"

urlpatterns = [
    path("customers/", customers.CustomerListView.as_view(), name="customer_list"),
]
