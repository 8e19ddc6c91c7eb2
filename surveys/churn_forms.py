"""Input shapes for churn interviews, reason codes and the churn report's date range."""

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.models import InteractionChannel

from . import churn_selectors
from .models import ChurnInterview, ReasonCode, WinbackOutcome

_DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class ChurnInterviewForm(forms.Form):
    interviewer = forms.ModelChoiceField(label=_("Interviewer"), queryset=None)
    interviewed_on = forms.DateField(label=_("Interview date"), widget=_DATE)
    channel = forms.ChoiceField(
        label=_("Channel"), choices=InteractionChannel.choices, initial=InteractionChannel.PHONE
    )
    primary_reason = forms.ModelChoiceField(label=_("Primary reason"), queryset=None)
    secondary_reasons = forms.ModelMultipleChoiceField(
        label=_("Secondary reasons"),
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    competitor = forms.CharField(
        label=_("Competitor"),
        max_length=200,
        required=False,
        help_text=_("Where they went instead, if they said."),
    )
    verbatim = forms.CharField(
        label=_("Verbatim"),
        max_length=4000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Their own words."),
    )
    liked = forms.CharField(
        label=_("What they liked"),
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    bring_back = forms.CharField(
        label=_("What would bring them back"),
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    likelihood_to_return = forms.IntegerField(
        label=_("Likelihood to return (0-10)"), min_value=0, max_value=10, required=False
    )
    winback_offer = forms.CharField(
        label=_("Win-back offer made"),
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    winback_outcome = forms.ChoiceField(
        label=_("Offer accepted?"), choices=WinbackOutcome.choices, initial=WinbackOutcome.NO_OFFER
    )
    follow_up_on = forms.DateField(
        label=_("Follow-up date"),
        required=False,
        widget=_DATE,
        help_text=_("If given, a follow-up is created for the interviewer."),
    )

    def __init__(self, *args, interview: ChurnInterview | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["interviewer"].queryset = churn_selectors.staff_users()
        reasons = ReasonCode.objects.filter(is_active=True)
        secondary = reasons
        if interview is not None:
            # A deactivated reason an interview already uses stays selectable on that interview.
            reasons = ReasonCode.objects.filter(is_active=True) | ReasonCode.objects.filter(
                pk=interview.primary_reason_id
            )
            secondary = ReasonCode.objects.filter(is_active=True) | ReasonCode.objects.filter(
                secondary_interviews=interview
            )
        self.fields["primary_reason"].queryset = reasons.distinct().order_by("category", "code")
        self.fields["secondary_reasons"].queryset = secondary.distinct().order_by(
            "category", "code"
        )

    def clean_interviewed_on(self):
        value = self.cleaned_data["interviewed_on"]
        if value > timezone.localdate():
            raise forms.ValidationError(_("The interview date cannot be in the future."))
        return value

    def clean(self):
        data = super().clean()
        interviewed_on, follow_up_on = data.get("interviewed_on"), data.get("follow_up_on")
        if interviewed_on and follow_up_on and follow_up_on < interviewed_on:
            self.add_error(
                "follow_up_on", _("The follow-up date cannot be before the interview date.")
            )
        return data


class ReasonCodeCreateForm(forms.ModelForm):
    class Meta:
        model = ReasonCode
        fields = ["code", "category", "label_en", "label_ko", "is_active"]


class ReasonCodeUpdateForm(forms.ModelForm):
    class Meta:
        model = ReasonCode
        fields = ["category", "label_en", "label_ko", "is_active"]


class ChurnReportForm(forms.Form):
    date_from = forms.DateField(label=_("Interviewed from"), required=False, widget=_DATE)
    date_to = forms.DateField(label=_("to"), required=False, widget=_DATE)

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", _("The end date is before the start date."))
        return data
