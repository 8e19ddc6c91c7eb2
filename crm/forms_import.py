"""The upload form of the import screen: kind, file, option. Size is checked here too."""

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _


class ImportForm(forms.Form):
    KIND_CHOICES = [
        ("customers", _("Customers")),
        ("orders", _("Orders")),
        ("interactions", _("Interactions")),
    ]

    kind = forms.ChoiceField(label=_("What the file holds"), choices=KIND_CHOICES)
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_("UTF-8 (with or without BOM), header row first."),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )
    create_customers = forms.BooleanField(
        label=_("Create a bare customer for an unknown customer_ref"),
        required=False,
        help_text=_("Orders and interactions only."),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.CRM_MAX_UPLOAD_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                _("The file is %(size)s; the limit is %(limit)s."),
                code="too_large",
                params={"size": filesizeformat(upload.size), "limit": filesizeformat(limit)},
            )
        return upload
