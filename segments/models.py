"""Buckets (customer segments), their rule versions and membership; ROI snapshots (below).

A bucket's rules are the JSON documented in segments/rules.py. Buckets are exclusive by
priority (lower number first); customers matching none are "Unsegmented" (bucket = NULL).
"""

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

COLOUR_VALIDATOR = RegexValidator(
    r"^#[0-9a-fA-F]{6}$", _("Enter a colour as #rrggbb, for example #1f77b4.")
)


class Bucket(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    persona = models.TextField(
        _("persona"),
        blank=True,
        max_length=4000,
        help_text=_("Who these customers are and how to serve them."),
    )
    colour = models.CharField(
        _("colour"), max_length=7, default="#1f77b4", validators=[COLOUR_VALIDATOR]
    )
    priority = models.PositiveIntegerField(
        _("priority"),
        unique=True,
        validators=[MinValueValidator(1)],
        help_text=_("Lower numbers are evaluated first; a customer joins the first match."),
    )
    active = models.BooleanField(_("active"), default=True)
    rules = models.JSONField(_("rules"), default=dict)
    version = models.PositiveIntegerField(_("version"), default=1)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("updated by"),
    )

    class Meta:
        verbose_name = _("bucket")
        verbose_name_plural = _("buckets")
        ordering = ["priority", "id"]
        permissions = [("view_roi", _("Can view ROI per bucket"))]
        constraints = [
            models.CheckConstraint(condition=Q(priority__gte=1), name="bucket_priority_gte_1"),
            models.CheckConstraint(
                condition=Q(colour__regex=r"^#[0-9a-fA-F]{6}$"), name="bucket_colour_hex"
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="bucket_version_gte_1"),
        ]

    def __str__(self) -> str:
        return self.name


class BucketVersion(models.Model):
    """The state of a bucket as saved: one row per save (version 1 = creation), who and when."""

    bucket = models.ForeignKey(Bucket, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField(_("version"))
    name = models.CharField(_("name"), max_length=100)
    persona = models.TextField(_("persona"), blank=True)
    colour = models.CharField(_("colour"), max_length=7)
    priority = models.PositiveIntegerField(_("priority"))
    active = models.BooleanField(_("active"))
    rules = models.JSONField(_("rules"))
    saved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("saved by"),
    )
    saved_at = models.DateTimeField(_("saved at"), default=timezone.now)

    class Meta:
        verbose_name = _("bucket version")
        verbose_name_plural = _("bucket versions")
        ordering = ["bucket", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["bucket", "version"], name="bucketversion_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class BucketMembership(models.Model):
    """Membership history: a customer was in `bucket` (NULL = Unsegmented) from entered_on
    until left_on (NULL = still there). At most one open row per customer."""

    # No single-column indexes on the foreign keys: the composite indexes below lead with
    # them, and every bucket change writes a row here (one index fewer to update each).
    customer = models.ForeignKey(
        "crm.Customer",
        on_delete=models.CASCADE,
        related_name="bucket_memberships",
        db_index=False,
    )
    bucket = models.ForeignKey(
        Bucket,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="memberships",
        verbose_name=_("bucket"),
        db_index=False,
    )
    entered_on = models.DateField(_("entered on"))
    left_on = models.DateField(_("left on"), null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("bucket membership")
        verbose_name_plural = _("bucket memberships")
        ordering = ["customer", "-entered_on", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer"],
                condition=Q(left_on__isnull=True),
                name="bucketmembership_one_open_per_customer",
            ),
            models.CheckConstraint(
                condition=Q(left_on__isnull=True) | Q(left_on__gte=F("entered_on")),
                name="bucketmembership_left_after_entered",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "-entered_on"], name="bucketmember_customer_idx"),
            models.Index(fields=["bucket", "entered_on"], name="bucketmember_bucket_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} in {self.bucket_id or '-'} {self.entered_on}..{self.left_on}"


class CurrentMembership(models.Model):
    """Fast read of each customer's bucket now (NULL = Unsegmented), kept by
    segments.services.memberships_refresh."""

    customer = models.OneToOneField(
        "crm.Customer",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="current_membership",
    )
    bucket = models.ForeignKey(  # indexed by currentmember_bucket_idx, which leads with it
        Bucket,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="current_members",
        verbose_name=_("bucket"),
        db_index=False,
    )
    since = models.DateField(_("since"))
    reason = models.CharField(_("reason"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("current membership")
        verbose_name_plural = _("current memberships")
        indexes = [models.Index(fields=["bucket", "customer"], name="currentmember_bucket_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id} in {self.bucket_id or '-'} since {self.since}"


# --- ROI job --- (engineer C2: the nightly job's runs and its per-bucket snapshots)

ROI_MONEY = {"max_digits": 16, "decimal_places": 2}
RATIO = {"max_digits": 14, "decimal_places": 4}


class JobRun(models.Model):
    """One run of the nightly ROI job (segments.jobs.roi_recalculate): when, how, outcome."""

    class Mode(models.TextChoices):
        FULL = "full", _("Full")
        INCREMENTAL = "incremental", _("Incremental")

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    as_of = models.DateField(_("as of"))
    mode = models.CharField(_("mode"), max_length=16, choices=Mode.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.RUNNING
    )
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    reports = models.JSONField(
        _("reports"),
        default=dict,
        blank=True,
        help_text=_("Precomputed screen data of this run: the whale curve and the cohorts."),
    )
    error = models.TextField(_("error"), blank=True)
    aggregates = models.JSONField(
        _("aggregates"),
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "The sums of the metrics table this run left (segments.selectors.RoiAggregates), "
            "from which the next incremental run moves them. Cleared when anything else "
            "writes the metrics table."
        ),
    )

    class Meta:
        verbose_name = _("ROI job run")
        verbose_name_plural = _("ROI job runs")
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["running", "succeeded", "failed"]),
                name="jobrun_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(mode__in=["full", "incremental"]), name="jobrun_mode_valid"
            ),
            # Two runs never overlap: at most one row may say "running".
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="running"), name="jobrun_one_running"
            ),
        ]
        indexes = [models.Index(fields=["status", "-started_at"], name="jobrun_status_idx")]

    def __str__(self) -> str:
        return f"{self.as_of} {self.mode} {self.status}"


class RoiSnapshot(models.Model):
    """What one bucket (NULL = Unsegmented) earned against its cost to serve, as of `date`.

    Written by the nightly job, one row per bucket per date, replaced atomically. Money sums are
    over the trailing window (settings.CRM_METRICS_WINDOW_DAYS); ROI, LTV:CAC and the payback
    figures are empty where their denominator is zero or missing.
    """

    date = models.DateField(_("date"))
    bucket = models.ForeignKey(
        Bucket,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="roi_snapshots",
        verbose_name=_("bucket"),
    )
    bucket_name = models.CharField(_("bucket name"), max_length=100, blank=True)
    customers = models.PositiveIntegerField(_("customers"), default=0)
    revenue = models.DecimalField(_("revenue"), **ROI_MONEY, default=0)
    margin = models.DecimalField(_("margin"), **ROI_MONEY, default=0)
    cost_to_serve = models.DecimalField(_("cost to serve"), **ROI_MONEY, default=0)
    contribution = models.DecimalField(_("contribution"), **ROI_MONEY, default=0)
    roi = models.DecimalField(_("ROI"), **RATIO, null=True, blank=True)
    contribution_per_customer = models.DecimalField(
        _("contribution per customer"), **ROI_MONEY, null=True, blank=True
    )
    share_of_total = models.DecimalField(_("share of total"), **RATIO, null=True, blank=True)
    avg_effort = models.DecimalField(
        _("average effort"), max_digits=5, decimal_places=2, null=True, blank=True
    )
    avg_influence = models.DecimalField(
        _("average influence"), max_digits=5, decimal_places=2, null=True, blank=True
    )
    nps = models.DecimalField(_("NPS"), max_digits=6, decimal_places=2, null=True, blank=True)
    churn_rate = models.DecimalField(_("churn rate"), **RATIO, null=True, blank=True)
    ltv_cac = models.DecimalField(_("LTV:CAC"), **RATIO, null=True, blank=True)
    payback_median_days = models.PositiveIntegerField(
        _("median payback (days)"), null=True, blank=True
    )
    payback_share = models.DecimalField(_("share paid back"), **RATIO, null=True, blank=True)
    job_run = models.ForeignKey(
        JobRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="snapshots",
        verbose_name=_("job run"),
    )

    class Meta:
        verbose_name = _("ROI snapshot")
        verbose_name_plural = _("ROI snapshots")
        ordering = ["-date", "bucket_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["date", "bucket"],
                condition=Q(bucket__isnull=False),
                name="roisnapshot_unique_date_bucket",
            ),
            models.UniqueConstraint(
                fields=["date"],
                condition=Q(bucket__isnull=True),
                name="roisnapshot_unique_date_unsegmented",
            ),
            models.CheckConstraint(
                condition=Q(churn_rate__isnull=True) | Q(churn_rate__range=(0, 1)),
                name="roisnapshot_churn_rate_0_1",
            ),
            models.CheckConstraint(
                condition=Q(payback_share__isnull=True) | Q(payback_share__range=(0, 1)),
                name="roisnapshot_payback_share_0_1",
            ),
            models.CheckConstraint(
                condition=Q(cost_to_serve__gte=0), name="roisnapshot_cost_not_negative"
            ),
        ]
        indexes = [models.Index(fields=["bucket", "-date"], name="roisnapshot_bucket_date_idx")]

    def __str__(self) -> str:
        return f"{self.date} {self.bucket_name or _('Unsegmented')}: {self.roi}"
