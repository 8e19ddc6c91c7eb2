"""The manager's upload screen: pick the kind, upload a CSV, read the report."""

from django.conf import settings
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from django.views import View

from crm import imports
from crm.forms_import import ImportForm
from crm.permissions import StaffPermissionMixin

# Room for the multipart envelope and the other fields around the file itself.
ENVELOPE_BYTES = 64 * 1024


class ImportView(StaffPermissionMixin, View):
    permission_required = "crm.import_data"
    template_name = "crm/import.html"

    def get(self, request):
        return self.render(ImportForm())

    def post(self, request):
        # Refuse an oversized upload from its declared length, before Django reads the body.
        limit = settings.CRM_MAX_UPLOAD_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit + ENVELOPE_BYTES:
            message = _("The upload is %(size)s; the limit is %(limit)s.") % {
                "size": filesizeformat(declared),
                "limit": filesizeformat(limit),
            }
            return self.render(ImportForm(), upload_error=message, status=413)
        form = ImportForm(request.POST, request.FILES)
        if not form.is_valid():
            too_large = form.has_error("file", code="too_large")
            return self.render(form, status=413 if too_large else 400)
        report = imports.import_file(
            kind=form.cleaned_data["kind"],
            file=form.cleaned_data["file"],
            user=request.user,
            create_customers=form.cleaned_data["create_customers"],
        )
        return self.render(
            ImportForm(initial={"kind": report.kind}),
            report=report,
            status=200 if report.ok else 400,
        )

    def render(self, form, *, report=None, upload_error="", status=200):
        columns = [
            (kind, [(c.name, c.required) for c in spec.values()])
            for kind, spec in (
                (_("Customers"), imports.CUSTOMER_COLUMNS),
                (_("Orders"), imports.ORDER_COLUMNS),
                (_("Interactions"), imports.INTERACTION_COLUMNS),
            )
        ]
        context = {"form": form, "report": report, "columns": columns, "upload_error": upload_error}
        return render(self.request, self.template_name, context, status=status)
