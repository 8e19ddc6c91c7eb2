"""Admin: buckets and membership are read here; edits go through the bucket screens so that
every change is validated and versioned."""

from django.contrib import admin

from .models import Bucket, BucketMembership, BucketVersion, CurrentMembership


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Bucket)
class BucketAdmin(ReadOnlyAdmin):
    list_display = ("priority", "name", "colour", "active", "version", "updated_at", "updated_by")
    list_filter = ("active",)
    search_fields = ("name",)
    list_select_related = ("updated_by",)


@admin.register(BucketVersion)
class BucketVersionAdmin(ReadOnlyAdmin):
    list_display = ("bucket", "version", "priority", "active", "saved_at", "saved_by")
    list_select_related = ("bucket", "saved_by")
    list_filter = ("bucket",)

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(BucketMembership)
class BucketMembershipAdmin(ReadOnlyAdmin):
    list_display = ("customer", "bucket", "entered_on", "left_on", "reason")
    list_select_related = ("customer", "bucket")
    list_filter = ("bucket",)
    raw_id_fields = ("customer",)
    date_hierarchy = "entered_on"

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CurrentMembership)
class CurrentMembershipAdmin(ReadOnlyAdmin):
    list_display = ("customer", "bucket", "since", "reason")
    list_select_related = ("customer", "bucket")
    list_filter = ("bucket",)
    raw_id_fields = ("customer",)

    def has_delete_permission(self, request, obj=None):
        return False


# --- ROI job (engineer C2): runs and snapshots are read-only records of what the job did ---

from .models import JobRun, RoiSnapshot  # noqa: E402


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "finished_at", "as_of", "mode", "status", "error")
    list_filter = ("status", "mode")
    date_hierarchy = "started_at"

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RoiSnapshot)
class RoiSnapshotAdmin(ReadOnlyAdmin):
    list_display = (
        "date",
        "bucket_name",
        "customers",
        "margin",
        "cost_to_serve",
        "contribution",
        "roi",
        "ltv_cac",
    )
    list_filter = ("bucket",)
    list_select_related = ("bucket",)
    date_hierarchy = "date"

    def has_delete_permission(self, request, obj=None):
        return False
