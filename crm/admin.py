"""Django admin for every crm model; the derived tables (CustomerMetrics, CohortContribution) are
read-only: the nightly job writes them."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from .models import (
    CohortContribution,
    Customer,
    CustomerMetrics,
    FollowUp,
    Interaction,
    MetricsRefresh,
    Order,
    OwnerChange,
    RankBoundary,
    RatingChange,
    SocialProfile,
    SocialTotal,
    User,
)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = BaseUserAdmin.fieldsets + (
        (_("Staff cost"), {"fields": ("hourly_cost", "phone", "job_title")}),
    )
    add_fieldsets = BaseUserAdmin.add_fieldsets + ((_("Staff cost"), {"fields": ("hourly_cost",)}),)
    list_display = (
        "username",
        "email",
        "first_name",
        "last_name",
        "hourly_cost",
        "is_active",
        "is_staff",
    )
    list_filter = BaseUserAdmin.list_filter + ("groups",)


class SocialProfileInline(admin.TabularInline):
    model = SocialProfile
    extra = 0


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "first_name",
        "last_name",
        "email",
        "city",
        "status",
        "owner",
        "service_effort",
        "influence",
    )
    list_filter = ("status", "preferred_language", "gender", "country")
    search_fields = ("first_name", "last_name", "email", "phone", "external_id")
    list_select_related = ("owner",)
    autocomplete_fields = ("owner", "effort_rated_by")
    readonly_fields = ("influence_computed", "influence", "created_at", "updated_at")
    show_full_result_count = False  # no COUNT(*) over a large table
    inlines = [SocialProfileInline]


class CustomerFKAdmin(admin.ModelAdmin):
    autocomplete_fields = ("customer",)
    show_full_result_count = False


@admin.register(RatingChange)
class RatingChangeAdmin(CustomerFKAdmin):
    list_display = ("customer", "kind", "old_value", "new_value", "changed_by", "changed_at")
    list_filter = ("kind",)
    search_fields = ("customer__last_name", "customer__email", "reason")
    list_select_related = ("customer", "changed_by")
    autocomplete_fields = ("customer", "changed_by")


@admin.register(SocialProfile)
class SocialProfileAdmin(CustomerFKAdmin):
    list_display = ("customer", "network", "handle", "followers", "updated_at")
    list_filter = ("network",)
    search_fields = ("handle", "customer__last_name", "customer__email")
    list_select_related = ("customer",)


@admin.register(Order)
class OrderAdmin(CustomerFKAdmin):
    list_display = ("id", "customer", "placed_at", "channel", "revenue", "margin", "category")
    list_filter = ("channel",)
    search_fields = ("external_id", "customer__last_name", "customer__email", "category")
    list_select_related = ("customer",)
    date_hierarchy = "placed_at"


@admin.register(Interaction)
class InteractionAdmin(CustomerFKAdmin):
    list_display = ("customer", "staff", "occurred_at", "channel", "minutes", "outcome")
    list_filter = ("channel", "direction", "outcome")
    search_fields = ("summary", "customer__last_name", "customer__email")
    list_select_related = ("customer", "staff")
    autocomplete_fields = ("customer", "staff")


@admin.register(OwnerChange)
class OwnerChangeAdmin(CustomerFKAdmin):
    list_display = ("customer", "from_owner", "to_owner", "changed_by", "changed_at", "reason")
    search_fields = ("customer__last_name", "customer__email", "reason")
    list_select_related = ("customer", "from_owner", "to_owner", "changed_by")
    autocomplete_fields = ("customer", "from_owner", "to_owner", "changed_by")


@admin.register(FollowUp)
class FollowUpAdmin(CustomerFKAdmin):
    list_display = ("customer", "assigned_to", "due_on", "status", "source", "reason")
    list_filter = ("status", "source")
    search_fields = ("reason", "customer__last_name", "customer__email")
    list_select_related = ("customer", "assigned_to")
    autocomplete_fields = ("customer", "assigned_to", "interaction", "completed_by")


class DerivedTableAdmin(admin.ModelAdmin):
    """Read-only: the nightly job writes these tables."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CustomerMetrics)
class CustomerMetricsAdmin(DerivedTableAdmin):
    list_display = (
        "customer",
        "status",
        "buyer_type",
        "order_count",
        "contribution_lifetime",
        "value_decile",
    )
    list_filter = ("status", "buyer_type", "value_decile")
    search_fields = ("customer__last_name", "customer__email")
    list_select_related = ("customer",)
    show_full_result_count = False


@admin.register(CohortContribution)
class CohortContributionAdmin(DerivedTableAdmin):
    list_display = ("cohort", "month", "units")
    list_filter = ("cohort",)
    ordering = ("-cohort", "month")


@admin.register(MetricsRefresh)
class MetricsRefreshAdmin(DerivedTableAdmin):
    list_display = ("as_of", "full", "customers", "finished_at")
    list_filter = ("full",)
    date_hierarchy = "finished_at"


@admin.register(SocialTotal)
class SocialTotalAdmin(DerivedTableAdmin):
    """A view over the social profiles: read-only like the job's tables."""

    list_display = ("customer", "followers")
    list_select_related = ("customer",)
    search_fields = ("customer__last_name", "customer__email")
    ordering = ("-followers", "customer_id")


@admin.register(RankBoundary)
class RankBoundaryAdmin(DerivedTableAdmin):
    list_display = ("kind", "tile", "value", "customer_id")
    list_filter = ("kind",)
    ordering = ("kind", "tile")
