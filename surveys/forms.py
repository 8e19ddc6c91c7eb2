"""Input shapes for the survey screens. Business rules live in services."""

import datetime as dt

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.models import Customer

from .models import AudienceKind, Campaign, QuestionKind, Survey


class SurveyForm(forms.ModelForm):
    class Meta:
        model = Survey
        fields = ["title_en", "title_ko", "intro_en", "intro_ko"]
        widgets = {
            "intro_en": forms.Textarea(attrs={"rows": 2}),
            "intro_ko": forms.Textarea(attrs={"rows": 2}),
        }


class QuestionForm(forms.Form):
    kind = forms.ChoiceField(label=_("kind"), choices=QuestionKind.choices)
    text_en = forms.CharField(label=_("text (English)"), max_length=500)
    text_ko = forms.CharField(label=_("text (Korean)"), max_length=500, required=False)
    required = forms.BooleanField(label=_("required"), required=False, initial=True)
    options = forms.CharField(
        label=_("options"),
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "fast | Fast delivery | 빠른 배송"}),
        help_text=_("Choice questions: one option per line, value | English | Korean."),
    )
    scale_min = forms.IntegerField(label=_("scale from"), required=False, min_value=-100)
    scale_max = forms.IntegerField(label=_("scale to"), required=False, max_value=100)


class CampaignForm(forms.Form):
    survey = forms.ModelChoiceField(label=_("survey"), queryset=Survey.objects.order_by("title_en"))
    name = forms.CharField(label=_("name"), max_length=200)
    audience_kind = forms.ChoiceField(label=_("audience"), choices=AudienceKind.choices)
    audience_query = forms.CharField(
        label=_("customer list filter"),
        required=False,
        max_length=2000,
        help_text=_("Paste the query string of the customer list, e.g. status=at_risk&city=Seoul."),
    )
    audience_customer = forms.IntegerField(label=_("customer id"), required=False, min_value=1)
    audience_bucket_id = forms.TypedChoiceField(
        label=_("bucket"), required=False, coerce=int, empty_value=None, choices=[]
    )
    expiry_days = forms.IntegerField(
        label=_("link valid for (days)"), min_value=1, max_value=365, initial=30
    )
    coupon_code = forms.CharField(label=_("thank-you coupon code"), required=False, max_length=64)
    reminder_after_days = forms.IntegerField(
        label=_("remind non-responders after (days)"),
        required=False,
        min_value=1,
        max_value=60,
        initial=7,
        help_text=_("Leave empty to send no reminder."),
    )

    def __init__(self, *args, bucket_choices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["audience_bucket_id"].choices = [("", "---------"), *bucket_choices]

    def clean_audience_customer(self):
        customer_id = self.cleaned_data.get("audience_customer")
        if customer_id is None:
            return None
        customer = Customer.objects.filter(pk=customer_id).first()
        if customer is None:
            raise forms.ValidationError(_("No customer has this id."))
        return customer

    @property
    def expires_at(self) -> dt.datetime:
        return timezone.now() + dt.timedelta(days=self.cleaned_data["expiry_days"])


class VerbatimFilterForm(forms.Form):
    campaign = forms.ModelChoiceField(
        label=_("campaign"), required=False, queryset=Campaign.objects.none()
    )
    since = forms.DateField(
        label=_("from"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label=_("to"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    contains = forms.CharField(label=_("contains"), required=False, max_length=100)
    unhappy_only = forms.BooleanField(label=_("unhappy only"), required=False)

    def __init__(self, *args, survey, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["campaign"].queryset = Campaign.objects.filter(survey=survey)

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError(_("The start date must not be after the end date."))
        return data


class QuestionEditForm(forms.Form):
    text_en = forms.CharField(label=_("text (English)"), max_length=500)
    text_ko = forms.CharField(label=_("text (Korean)"), max_length=500, required=False)
    required = forms.BooleanField(label=_("required"), required=False)
    options = forms.CharField(
        label=_("options"),
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Choice questions: one option per line, value | English | Korean."),
    )
