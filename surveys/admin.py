"""Django admin for surveys. Survey models' admins go above; churn interviews' below."""

from django.contrib import admin

from .models import Campaign, Invitation, Question, Response, Survey


class QuestionInline(admin.TabularInline):
    model = Question
    extra = 0
    fields = (
        "order",
        "kind",
        "text_en",
        "text_ko",
        "required",
        "options",
        "scale_min",
        "scale_max",
    )


@admin.register(Survey)
class SurveyAdmin(admin.ModelAdmin):
    list_display = ("title_en", "title_ko", "created_at")
    search_fields = ("title_en", "title_ko")
    inlines = [QuestionInline]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("name", "survey", "audience_kind", "invited_count", "queued_at", "expires_at")
    list_select_related = ("survey",)
    raw_id_fields = ("audience_customer", "created_by")
    readonly_fields = ("invited_count", "skipped_opt_out", "skipped_no_email", "queued_at")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Read-only: tokens exist only in the emails; the hashes here cannot be turned into links."""

    list_display = ("id", "campaign", "customer", "sent_at", "opened_at", "reminded_at")
    list_select_related = ("campaign", "customer")
    raw_id_fields = ("campaign", "customer")
    exclude = ("token_hash", "reminder_token_hash")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ("id", "survey", "campaign", "customer", "finished_at", "unhappy", "recovered")
    list_select_related = ("survey", "campaign", "customer")
    list_filter = ("unhappy", "recovered")
    raw_id_fields = ("invitation", "campaign", "survey", "customer")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# --- Churn interviews ---
# isort: split
from django.contrib import admin as _admin  # noqa: E402

from .models import ChurnInterview, ChurnSecondaryReason, ReasonCode  # noqa: E402


@_admin.register(ReasonCode)
class ReasonCodeAdmin(_admin.ModelAdmin):
    """Codes are deactivated, not deleted, once used: the database protects them."""

    list_display = ("code", "category", "label_en", "label_ko", "is_active", "updated_at")
    list_filter = ("category", "is_active")
    search_fields = ("code", "label_en", "label_ko")
    ordering = ("category", "code")

    def get_readonly_fields(self, request, obj=None):
        return ("code", "created_at", "updated_at") if obj else ("created_at", "updated_at")


class ChurnSecondaryReasonInline(_admin.TabularInline):
    model = ChurnSecondaryReason
    extra = 0
    readonly_fields = ("reason", "label_en", "label_ko")

    def has_add_permission(self, request, obj=None):
        return False


@_admin.register(ChurnInterview)
class ChurnInterviewAdmin(_admin.ModelAdmin):
    list_display = (
        "customer",
        "interviewed_on",
        "interviewer",
        "primary_reason_label_en",
        "likelihood_to_return",
        "winback_outcome",
    )
    list_filter = ("winback_outcome", "primary_reason__category", "channel")
    date_hierarchy = "interviewed_on"
    search_fields = ("customer__first_name", "customer__last_name", "competitor", "verbatim")
    list_select_related = ("customer", "interviewer")
    raw_id_fields = ("customer", "interviewer", "follow_up", "created_by")
    # Reasons and their wording snapshots are set by the interview form's service (which copies
    # the wording); here they are shown, not edited, and interviews are not added.
    readonly_fields = (
        "primary_reason",
        "primary_reason_label_en",
        "primary_reason_label_ko",
        "created_at",
    )
    inlines = [ChurnSecondaryReasonInline]

    def has_add_permission(self, request):
        return False


# --- The remaining models, read-only: every model can be looked at in the admin ---
# isort: split
from .models import Answer, ResponseDraft  # noqa: E402


class _ReadOnlyAdmin(_admin.ModelAdmin):
    """Rows written only by the services (answers, drafts, secondary reasons): shown, never
    added or edited here, so the admin cannot bypass the services' validation."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@_admin.register(Question)
class QuestionAdmin(_ReadOnlyAdmin):
    """Questions are edited in the survey builder (or the survey's inline here)."""

    list_display = ("survey", "order", "kind", "text_en", "required")
    list_filter = ("kind", "required")
    list_select_related = ("survey",)
    search_fields = ("text_en", "text_ko")
    ordering = ("survey", "order")


@_admin.register(Answer)
class AnswerAdmin(_ReadOnlyAdmin):
    list_display = ("id", "response", "question", "kind", "value_int")
    list_filter = ("kind",)
    list_select_related = ("response", "question")
    raw_id_fields = ("response", "question")


@_admin.register(ResponseDraft)
class ResponseDraftAdmin(_ReadOnlyAdmin):
    list_display = ("invitation", "updated_at")
    raw_id_fields = ("invitation",)


@_admin.register(ChurnSecondaryReason)
class ChurnSecondaryReasonAdmin(_ReadOnlyAdmin):
    list_display = ("interview", "reason", "label_en", "label_ko")
    list_select_related = ("interview", "reason")
    raw_id_fields = ("interview", "reason")
