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

    customer = models.ForeignKey(
        "crm.Customer", on_delete=models.CASCADE, related_name="bucket_memberships"
    )
    bucket = models.ForeignKey(
        Bucket,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="memberships",
        verbose_name=_("bucket"),
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
    bucket = models.ForeignKey(
        Bucket,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="current_members",
        verbose_name=_("bucket"),
    )
    since = models.DateField(_("since"))
    reason = models.CharField(_("reason"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("current membership")
        verbose_name_plural = _("current memberships")
        indexes = [models.Index(fields=["bucket", "customer"], name="currentmember_bucket_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id} in {self.bucket_id or '-'} since {self.since}"
