from django.views.generic import TemplateView

from crm.permissions import StaffPermissionMixin


class CustomerListView(StaffPermissionMixin, TemplateView):
    """Placeholder; the real list arrives with the customer screens."""

    permission_required = "crm.view_customer"
    template_name = "crm/customer_list.html"
