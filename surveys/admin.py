"""Django admin for surveys. Survey models' admins go above; churn interviews' below."""

from django.contrib import admin  # noqa: F401

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
