"""Input shapes for the crm screens. Validation of shape and range only; rules are services."""

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import Direction, InteractionChannel, Outcome, SocialNetwork
from .selectors import staff_list


class EffortForm(forms.Form):
    effort = forms.IntegerField(label=_("Service effort"), min_value=1, max_value=10)
    reason = forms.CharField(label=_("Note"), max_length=255, required=False)


class InfluenceOverrideForm(forms.Form):
    value = forms.IntegerField(
        label=_("Influence override"),
        min_value=0,
        max_value=10,
        required=False,
        help_text=_("Leave empty to remove the override and use the computed score."),
    )
    reason = forms.CharField(label=_("Reason"), max_length=255, required=False)

    def clean(self):
        data = super().clean()
        if data.get("value") is not None and not (data.get("reason") or "").strip():
            self.add_error("reason", _("Give a reason for overriding the influence."))
        return data


class SocialProfileForm(forms.Form):
    network = forms.ChoiceField(label=_("Network"), choices=SocialNetwork.choices)
    handle = forms.CharField(label=_("Handle"), max_length=100)
    followers = forms.IntegerField(label=_("Followers"), min_value=0, max_value=2_000_000_000)


class InteractionForm(forms.Form):
    channel = forms.ChoiceField(label=_("Channel"), choices=InteractionChannel.choices)
    direction = forms.ChoiceField(
        label=_("Direction"), choices=Direction.choices, initial=Direction.INBOUND
    )
    minutes = forms.IntegerField(label=_("Minutes"), min_value=1, max_value=1440)
    summary = forms.CharField(
        label=_("Summary"),
        max_length=4000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    outcome = forms.ChoiceField(label=_("Outcome"), choices=Outcome.choices)
    follow_up_on = forms.DateField(
        label=_("Follow up on"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("Optional: opens a follow-up for the account owner (or you)."),
    )


class CancelForm(forms.Form):
    confirm = forms.BooleanField(label=_("Yes, the customer has cancelled"), required=True)
    reason = forms.CharField(label=_("Note"), max_length=255, required=False)


class StaffChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return str(obj)


class OwnerAssignForm(forms.Form):
    owner = StaffChoiceField(
        label=_("Owner"),
        queryset=staff_list(),
        required=False,
        empty_label=_("(nobody: unassigned)"),
        error_messages={"invalid_choice": _("Choose an active staff member from the list.")},
    )
    reason = forms.CharField(label=_("Reason"), max_length=255, required=False)


class IdListField(forms.Field):
    """A list of positive integer ids from repeated query/form keys (checkboxes)."""

    widget = forms.MultipleHiddenInput
    default_error_messages = {
        "invalid": _("%(value)s is not a valid id."),
        "required": _("Select at least one account."),
    }

    def to_python(self, value):
        values = value if isinstance(value, list | tuple) else ([value] if value else [])
        ids = []
        for item in values:
            try:
                number = int(item)
            except (TypeError, ValueError):
                number = 0
            if number <= 0:
                raise forms.ValidationError(
                    self.error_messages["invalid"], code="invalid", params={"value": str(item)[:20]}
                )
            ids.append(number)
        return ids

    def validate(self, value):
        if self.required and not value:
            raise forms.ValidationError(self.error_messages["required"], code="required")


class BulkAssignForm(OwnerAssignForm):
    customers = IdListField(label=_("Accounts"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].required = True
        self.fields["owner"].empty_label = None


class EvenOutForm(forms.Form):
    staff = forms.ModelMultipleChoiceField(
        label=_("Spread over"),
        queryset=staff_list(),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": _("Choose active staff members from the list.")},
    )
    unassigned_only = forms.BooleanField(label=_("Only unassigned accounts"), required=False)


class EvenOutApplyForm(forms.Form):
    assignments = forms.CharField(widget=forms.HiddenInput)
    reason = forms.CharField(label=_("Reason"), max_length=255, required=False)

    def clean_assignments(self):
        result: dict[int, int] = {}
        for pair in self.cleaned_data["assignments"].split(","):
            try:
                customer_id, staff_id = (int(x) for x in pair.split(":"))
            except ValueError:
                raise forms.ValidationError(_("The proposal is malformed; preview it again."))
            result[customer_id] = staff_id
        return result


class FollowUpDoneForm(forms.Form):
    outcome = forms.CharField(label=_("Outcome"), max_length=2000)
