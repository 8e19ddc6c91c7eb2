"""CRM core data: staff users, customers, social profiles, orders, interactions, ownership.

Models hold data, constraints and small properties; rules live in services.py and
selectors.py. Every range and uniqueness rule of domain.md is also a database constraint.
"""

from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .querysets import CustomerQuerySet, FollowUpQuerySet

MONEY = {"max_digits": 14, "decimal_places": 2}


class User(AbstractUser):
    """A staff member. Roles are the groups "Support staff" and "Managers"."""

    hourly_cost = models.DecimalField(
        _("hourly cost"),
        **MONEY,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text=_("Cost of one hour of this person's time; empty uses the global default."),
    )
    phone = models.CharField(_("phone"), max_length=40, blank=True)
    job_title = models.CharField(_("job title"), max_length=100, blank=True)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        constraints = [
            models.CheckConstraint(
                condition=Q(hourly_cost__isnull=True) | Q(hourly_cost__gte=0),
                name="user_hourly_cost_not_negative",
            )
        ]

    def __str__(self) -> str:
        return self.get_full_name() or self.username

    @property
    def cost_per_hour(self) -> Decimal:
        if self.hourly_cost is not None:
            return self.hourly_cost
        return settings.CRM_STAFF_COST_PER_HOUR


class Channel(models.TextChoices):
    ONLINE = "online", _("Online")
    STORE = "store", _("Store")
    PHONE = "phone", _("Phone")


class CustomerStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    AT_RISK = "at_risk", _("At risk")
    CHURNED = "churned", _("Churned")


class BuyerType(models.TextChoices):
    NONE = "none", _("No orders")
    FIRST_TIME = "first_time", _("First-time")
    OCCASIONAL = "occasional", _("Occasional")
    REGULAR = "regular", _("Regular")


class Gender(models.TextChoices):
    FEMALE = "female", _("Female")
    MALE = "male", _("Male")
    OTHER = "other", _("Other")
    UNDISCLOSED = "undisclosed", _("Prefers not to say")


class Language(models.TextChoices):
    ENGLISH = "en", _("English")
    KOREAN = "ko", _("Korean")


class Customer(models.Model):
    external_id = models.CharField(_("external id"), max_length=64, blank=True, default="")
    first_name = models.CharField(_("first name"), max_length=100)
    last_name = models.CharField(_("last name"), max_length=100, blank=True)
    email = models.EmailField(_("email"), blank=True)
    phone = models.CharField(_("phone"), max_length=40, blank=True)
    preferred_language = models.CharField(
        _("preferred language"), max_length=8, choices=Language.choices, default=Language.ENGLISH
    )
    email_opt_out = models.BooleanField(_("opted out of email"), default=False)

    # Demographics, all optional.
    birth_year = models.PositiveSmallIntegerField(_("birth year"), null=True, blank=True)
    gender = models.CharField(_("gender"), max_length=16, choices=Gender.choices, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    region = models.CharField(_("region"), max_length=100, blank=True)
    country = models.CharField(_("country"), max_length=2, blank=True, help_text=_("ISO code"))
    occupation = models.CharField(_("occupation"), max_length=100, blank=True)
    lifestyle_notes = models.TextField(_("lifestyle notes"), blank=True)
    web_savviness = models.PositiveSmallIntegerField(
        _("web savviness"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
    )
    browser = models.CharField(_("browser"), max_length=50, blank=True)
    referral_source = models.CharField(_("referral source"), max_length=100, blank=True)

    # Acquisition.
    acquisition_date = models.DateField(_("acquisition date"), null=True, blank=True)
    acquisition_channel = models.CharField(_("acquisition channel"), max_length=50, blank=True)
    acquisition_cost = models.DecimalField(
        _("acquisition cost"), **MONEY, null=True, blank=True, validators=[MinValueValidator(0)]
    )

    # Service effort 1-10, rated by staff; who and when is kept (history in RatingChange).
    service_effort = models.PositiveSmallIntegerField(
        _("service effort"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
    )
    effort_rated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("effort rated by"),
    )
    effort_rated_at = models.DateTimeField(_("effort rated at"), null=True, blank=True)

    # Influence 0-10: computed from social profiles, or a manager's override with a reason.
    influence_computed = models.PositiveSmallIntegerField(_("influence (computed)"), default=0)
    influence_override = models.PositiveSmallIntegerField(
        _("influence override"),
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(10)],
    )
    influence_override_reason = models.CharField(_("override reason"), max_length=255, blank=True)
    influence = models.PositiveSmallIntegerField(
        _("influence"), default=0, help_text=_("The override where set, else the computed score.")
    )

    status = models.CharField(
        _("status"), max_length=16, choices=CustomerStatus.choices, default=CustomerStatus.ACTIVE
    )
    cancelled_at = models.DateTimeField(
        _("cancelled at"), null=True, blank=True, help_text=_("Marked cancelled by staff.")
    )
    owner = models.ForeignKey(  # indexed by customer_owner_idx, which leads with it
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_customers",
        verbose_name=_("owner"),
        db_index=False,
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        ordering = ["id"]
        permissions = [
            ("assign_owner", _("Can assign account owners")),
            ("override_influence", _("Can override the influence score")),
            ("import_data", _("Can import customers, orders and interactions")),
            ("view_high_value", _("Can see the high-value accounts")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["external_id"],
                condition=~Q(external_id=""),
                name="customer_external_id_unique",
            ),
            models.CheckConstraint(
                condition=Q(service_effort__isnull=True) | Q(service_effort__range=(1, 10)),
                name="customer_effort_1_10",
            ),
            models.CheckConstraint(
                condition=Q(influence_computed__range=(0, 10)), name="customer_influence_0_10"
            ),
            models.CheckConstraint(
                condition=Q(influence__range=(0, 10)), name="customer_influence_eff_0_10"
            ),
            models.CheckConstraint(
                condition=Q(influence_override__isnull=True) | Q(influence_override__range=(0, 10)),
                name="customer_influence_override_0_10",
            ),
            models.CheckConstraint(
                condition=Q(web_savviness__isnull=True) | Q(web_savviness__range=(1, 5)),
                name="customer_web_savviness_1_5",
            ),
            models.CheckConstraint(
                condition=Q(birth_year__isnull=True) | Q(birth_year__range=(1900, 2100)),
                name="customer_birth_year_plausible",
            ),
            models.CheckConstraint(
                condition=Q(acquisition_cost__isnull=True) | Q(acquisition_cost__gte=0),
                name="customer_acquisition_cost_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(status__in=CustomerStatus.values), name="customer_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["owner", "id"], name="customer_owner_idx"),
            # No index holds the status (migration 0014): the nightly job copies a few
            # thousand changed statuses a day, and with the status in no index and a fill
            # factor of 90 each copy is a HOT update on its own page (47 ms for 8.7k rows at
            # 1M customers, against 470 ms into all 13 indexes). Three values: a status filter
            # walks the list order and finds a page of matches in a few hundred rows.
            # Sortable columns end with the id, the tiebreaker of every sort (crm.tables), so a
            # deep page walks one index instead of sorting the ties.
            models.Index(fields=["last_name", "first_name", "id"], name="customer_name_id_idx"),
            models.Index(fields=["email", "id"], name="customer_email_id_idx"),
            # The customer list's filters and sortable columns (issue 5); the trigram index
            # for search is PostgreSQL-only and made by migration 0005 (RunPython).
            models.Index(fields=["service_effort", "id"], name="customer_effort_id_idx"),
            models.Index(fields=["influence", "id"], name="customer_influence_id_idx"),
            models.Index(fields=["city", "id"], name="customer_city_id_idx"),
            models.Index(Upper("city"), name="customer_city_upper_idx"),
            # The nightly job's incremental scope: customers edited since the last run.
            models.Index(fields=["updated_at"], name="customer_updated_idx"),
        ]

    def __str__(self) -> str:
        return self.full_name

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class RatingKind(models.TextChoices):
    EFFORT = "effort", _("Service effort")
    INFLUENCE = "influence", _("Influence override")


class RatingChange(models.Model):
    """History of manual ratings: every effort rating and influence override, who and when."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="rating_changes")
    kind = models.CharField(_("kind"), max_length=16, choices=RatingKind.choices)
    old_value = models.PositiveSmallIntegerField(_("old value"), null=True, blank=True)
    new_value = models.PositiveSmallIntegerField(_("new value"), null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    changed_at = models.DateTimeField(_("changed at"), default=timezone.now)

    class Meta:
        verbose_name = _("rating change")
        verbose_name_plural = _("rating changes")
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["customer", "-changed_at"], name="ratingchange_customer_idx")
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(new_value__isnull=True) | Q(new_value__lte=10),
                name="ratingchange_value_max_10",
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.kind}: {self.old_value} -> {self.new_value}"


class SocialNetwork(models.TextChoices):
    INSTAGRAM = "instagram", "Instagram"
    TIKTOK = "tiktok", "TikTok"
    YOUTUBE = "youtube", "YouTube"
    X = "x", "X"
    FACEBOOK = "facebook", "Facebook"
    LINKEDIN = "linkedin", "LinkedIn"
    BLOG = "blog", _("Blog")
    OTHER = "other", _("Other")


class SocialProfile(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="social_profiles")
    network = models.CharField(_("network"), max_length=16, choices=SocialNetwork.choices)
    handle = models.CharField(_("handle"), max_length=100)
    followers = models.PositiveIntegerField(_("followers"), default=0)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("social profile")
        verbose_name_plural = _("social profiles")
        ordering = ["-followers", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "network", "handle"], name="socialprofile_unique_handle"
            ),
            models.CheckConstraint(
                condition=Q(followers__gte=0), name="socialprofile_followers_gte_0"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_network_display()} @{self.handle}"


class SocialTotal(models.Model):
    """Read-only: each customer's followers over all their social profiles, a database view
    (crm migration 0016; customers without a profile have no row). The rules' followers field
    reads it when every customer is evaluated: one join in customer order instead of a
    subquery per customer (segments.selectors)."""

    customer = models.OneToOneField(
        Customer,
        on_delete=models.DO_NOTHING,
        primary_key=True,
        related_name="social_total",
        db_constraint=False,
        verbose_name=_("customer"),
    )
    followers = models.BigIntegerField(_("followers"))

    class Meta:
        managed = False
        db_table = "crm_social_totals"
        verbose_name = _("social total")
        verbose_name_plural = _("social totals")

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.followers}"


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    external_id = models.CharField(_("external id"), max_length=64, blank=True, default="")
    placed_at = models.DateTimeField(_("placed at"))
    channel = models.CharField(
        _("channel"), max_length=16, choices=Channel.choices, default=Channel.ONLINE
    )
    revenue = models.DecimalField(_("revenue"), **MONEY, validators=[MinValueValidator(0)])
    cost_of_goods = models.DecimalField(_("cost of goods"), **MONEY)
    margin = models.DecimalField(_("margin"), **MONEY, help_text=_("Revenue minus cost of goods."))
    brand = models.CharField(_("brand"), max_length=100, blank=True)
    category = models.CharField(_("category"), max_length=100, blank=True)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        ordering = ["-placed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["external_id"],
                condition=~Q(external_id=""),
                name="order_external_id_unique",
            ),
            models.CheckConstraint(condition=Q(revenue__gte=0), name="order_revenue_not_negative"),
            models.CheckConstraint(
                condition=Q(cost_of_goods__gte=0), name="order_cost_not_negative"
            ),
            # Within half a cent rather than equal: SQLite compares decimals as floats.
            models.CheckConstraint(
                condition=Q(margin__gt=F("revenue") - F("cost_of_goods") - Decimal("0.005"))
                & Q(margin__lt=F("revenue") - F("cost_of_goods") + Decimal("0.005")),
                name="order_margin_is_revenue_minus_cost",
            ),
            models.CheckConstraint(
                condition=Q(channel__in=Channel.values), name="order_channel_valid"
            ),
        ]
        # Covering (margin): the full refresh's payback reads every order in customer and time
        # order from this index alone (crm.metrics._payback_everyone_sql).
        indexes = [
            models.Index(
                fields=["customer", "placed_at"],
                include=["margin"],
                name="order_customer_placed_inc",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.placed_at:%Y-%m-%d} {self.revenue}"


class InteractionChannel(models.TextChoices):
    PHONE = "phone", _("Phone")
    EMAIL = "email", _("Email")
    CHAT = "chat", _("Chat")
    STORE = "store", _("In store")
    SOCIAL = "social", _("Social media")
    VIDEO = "video", _("Video call")
    OTHER = "other", _("Other")


class Direction(models.TextChoices):
    INBOUND = "inbound", _("Inbound")
    OUTBOUND = "outbound", _("Outbound")


class Outcome(models.TextChoices):
    RESOLVED = "resolved", _("Resolved")
    FOLLOW_UP = "follow_up", _("Needs follow-up")
    ESCALATED = "escalated", _("Escalated")
    SALE = "sale", _("Sale")
    INFORMATION = "information", _("Information given")
    COMPLAINT = "complaint", _("Complaint logged")
    NO_ANSWER = "no_answer", _("No answer")


class Interaction(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="interactions")
    staff = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="interactions",
        verbose_name=_("staff member"),
    )
    occurred_at = models.DateTimeField(_("occurred at"), default=timezone.now)
    channel = models.CharField(_("channel"), max_length=16, choices=InteractionChannel.choices)
    direction = models.CharField(
        _("direction"), max_length=16, choices=Direction.choices, default=Direction.INBOUND
    )
    minutes = models.PositiveSmallIntegerField(
        _("minutes"), validators=[MinValueValidator(1), MaxValueValidator(1440)]
    )
    summary = models.TextField(_("summary"), max_length=4000, blank=True)
    outcome = models.CharField(
        _("outcome"), max_length=16, choices=Outcome.choices, default=Outcome.RESOLVED
    )
    follow_up_on = models.DateField(_("follow-up date"), null=True, blank=True)
    external_id = models.CharField(_("external id"), max_length=64, blank=True, default="")
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("interaction")
        verbose_name_plural = _("interactions")
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(minutes__range=(1, 1440)), name="interaction_minutes_1_1440"
            ),
            models.UniqueConstraint(
                fields=["external_id"],
                condition=~Q(external_id=""),
                name="interaction_external_id_unique",
            ),
            models.CheckConstraint(
                condition=Q(channel__in=InteractionChannel.values), name="interaction_channel_valid"
            ),
            models.CheckConstraint(
                condition=Q(direction__in=Direction.values), name="interaction_direction_valid"
            ),
            models.CheckConstraint(
                condition=Q(outcome__in=Outcome.values), name="interaction_outcome_valid"
            ),
        ]
        indexes = [
            # Covering (minutes, staff): see Order's index.
            models.Index(
                fields=["customer", "occurred_at"],
                include=["minutes", "staff"],
                name="interaction_customer_at_inc",
            ),
            models.Index(fields=["staff", "occurred_at"], name="interaction_staff_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d} {self.get_channel_display()} {self.minutes} min"


class OwnerChange(models.Model):
    """Every change of account owner: from, to, by whom, when, why."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="owner_changes")
    from_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    to_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    changed_at = models.DateTimeField(_("changed at"), default=timezone.now)
    reason = models.CharField(_("reason"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("owner change")
        verbose_name_plural = _("owner changes")
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["customer", "-changed_at"], name="ownerchange_customer_idx")
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.from_owner_id} -> {self.to_owner_id}"


class FollowUpSource(models.TextChoices):
    INTERACTION = "interaction", _("Interaction")
    SURVEY = "survey", _("Unhappy survey answer")
    MANUAL = "manual", _("Manual")


class FollowUpStatus(models.TextChoices):
    OPEN = "open", _("Open")
    DONE = "done", _("Done")


class FollowUp(models.Model):
    """A task for staff about one customer; the support queue is the open ones.

    assigned_to empty means the unassigned queue. Other apps create follow-ups too (an unhappy
    survey answer does), naming themselves in `source` and `source_ref`.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="follow_ups")
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="follow_ups",
        verbose_name=_("assigned to"),
    )
    source = models.CharField(_("source"), max_length=16, choices=FollowUpSource.choices)
    source_ref = models.CharField(_("source reference"), max_length=64, blank=True)
    interaction = models.ForeignKey(
        Interaction, on_delete=models.SET_NULL, null=True, blank=True, related_name="follow_ups"
    )
    reason = models.CharField(_("reason"), max_length=255)
    due_on = models.DateField(_("due on"))
    status = models.CharField(
        _("status"), max_length=8, choices=FollowUpStatus.choices, default=FollowUpStatus.OPEN
    )
    outcome = models.TextField(_("outcome"), blank=True, max_length=2000)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = FollowUpQuerySet.as_manager()

    class Meta:
        verbose_name = _("follow-up")
        verbose_name_plural = _("follow-ups")
        ordering = ["due_on", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=FollowUpStatus.values), name="followup_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status="open") | Q(completed_at__isnull=False),
                name="followup_done_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["assigned_to", "status", "due_on"], name="followup_queue_idx"),
            models.Index(fields=["customer", "status"], name="followup_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.reason} ({self.due_on})"


class CustomerMetrics(models.Model):
    """Derived per-customer figures, one narrow row per customer, refreshed set-based by the
    nightly job (segments) through crm.metrics. Kept out of the wide customer table so that the
    nightly bulk write stays cheap. "window" means the trailing METRICS_WINDOW_DAYS (365) days up
    to the run's date; "lifetime" means all time up to it.

    Rows are only rewritten where a value changed, so that a nightly run writes what changed and
    not every row: nothing here moves by itself from one day to the next (days since the last
    order is computed when read, from last_order_at). A few customer columns are copied here
    (effort, influence, acquisition, cancellation) and the bucket is copied by segments, so that
    the nightly ROI figures aggregate this one narrow table without joins.
    """

    customer = models.OneToOneField(
        Customer, on_delete=models.CASCADE, primary_key=True, related_name="metrics"
    )
    order_count = models.PositiveIntegerField(_("orders"), default=0)
    orders_window = models.PositiveIntegerField(_("orders in window"), default=0)
    first_order_at = models.DateTimeField(_("first order"), null=True, blank=True)
    last_order_at = models.DateTimeField(_("last order"), null=True, blank=True)
    revenue_window = models.DecimalField(_("revenue (window)"), **MONEY, default=0)
    margin_window = models.DecimalField(_("margin (window)"), **MONEY, default=0)
    revenue_lifetime = models.DecimalField(_("revenue (lifetime)"), **MONEY, default=0)
    margin_lifetime = models.DecimalField(_("margin (lifetime)"), **MONEY, default=0)
    aov = models.DecimalField(_("average order value"), **MONEY, null=True, blank=True)
    buyer_type = models.CharField(
        _("buyer type"), max_length=16, choices=BuyerType.choices, default=BuyerType.NONE
    )
    preferred_channel = models.CharField(
        _("preferred channel"), max_length=16, choices=Channel.choices, blank=True
    )
    favourite_category = models.CharField(_("favourite category"), max_length=100, blank=True)
    favourite_brand = models.CharField(_("favourite brand"), max_length=100, blank=True)
    minutes_window = models.PositiveIntegerField(_("minutes served (window)"), default=0)
    minutes_lifetime = models.PositiveIntegerField(_("minutes served (lifetime)"), default=0)
    cost_to_serve_window = models.DecimalField(_("cost to serve (window)"), **MONEY, default=0)
    cost_to_serve_lifetime = models.DecimalField(_("cost to serve (lifetime)"), **MONEY, default=0)
    contribution_window = models.DecimalField(_("contribution (window)"), **MONEY, default=0)
    contribution_lifetime = models.DecimalField(_("contribution (lifetime)"), **MONEY, default=0)
    value_decile = models.PositiveSmallIntegerField(_("value decile"), null=True, blank=True)
    suggested_effort = models.PositiveSmallIntegerField(
        _("suggested effort"), null=True, blank=True
    )
    status = models.CharField(
        _("status"), max_length=16, choices=CustomerStatus.choices, default=CustomerStatus.ACTIVE
    )
    payback_days = models.PositiveIntegerField(
        _("payback (days)"),
        null=True,
        blank=True,
        help_text=_("Days from acquisition until cumulative contribution reached the CAC."),
    )
    acquisition_month = models.DateField(
        _("acquisition month"),
        null=True,
        blank=True,
        help_text=_("Cohort: month of the acquisition date, else of the first order."),
    )
    status_from = models.DateField(
        _("status counted from"),
        null=True,
        blank=True,
        help_text=_("Local date of the last order, else acquisition, else creation."),
    )
    cancelled_on = models.DateField(_("cancelled on"), null=True, blank=True)
    recheck_on = models.DateField(
        _("recheck on"),
        null=True,
        blank=True,
        help_text=_(
            "First date on which this row goes stale with time alone: an order or interaction "
            "leaves a window, a future-dated one arrives, or the acquisition date is reached."
        ),
    )
    # Copies of customer columns (refreshed with the row) and of the bucket (set by segments).
    service_effort = models.PositiveSmallIntegerField(_("service effort"), null=True, blank=True)
    influence = models.PositiveSmallIntegerField(_("influence"), default=0)
    acquisition_date = models.DateField(_("acquisition date"), null=True, blank=True)
    acquisition_cost = models.DecimalField(_("acquisition cost"), **MONEY, null=True, blank=True)
    bucket_id = models.BigIntegerField(
        _("bucket"), null=True, blank=True, help_text=_("Current bucket (segments), copied.")
    )
    refreshed_at = models.DateTimeField(_("refreshed at"), default=timezone.now)

    class Meta:
        verbose_name = _("customer metrics")
        verbose_name_plural = _("customer metrics")
        constraints = [
            models.CheckConstraint(
                condition=Q(value_decile__isnull=True) | Q(value_decile__range=(1, 10)),
                name="metrics_decile_1_10",
            ),
            models.CheckConstraint(
                condition=Q(suggested_effort__isnull=True) | Q(suggested_effort__range=(1, 10)),
                name="metrics_suggested_effort_1_10",
            ),
            models.CheckConstraint(
                condition=Q(buyer_type__in=BuyerType.values), name="metrics_buyer_type_valid"
            ),
        ]
        # Value decile, buyer type and preferred channel are not indexed: ten values or fewer,
        # so a filter on one reads a tenth of the table or more, and each index would make
        # every nightly rewrite of a row dearer (migration 0010; fill factor 85 there too).
        indexes = [
            # Value decile order (contribution, then id, both descending): walked backwards
            # by the incremental repair of the ranks (crm.metrics).
            models.Index(
                fields=["contribution_lifetime", "customer_id"], name="metrics_contrib_rank_idx"
            ),
            # Suggested effort order, among customers served at all.
            models.Index(
                fields=["minutes_window", "customer_id"],
                name="metrics_minutes_rank_idx",
                condition=Q(minutes_window__gt=0),
            ),
        ]
        # recheck_on is not indexed (migration 0018): every customer whose window moved gets a
        # new date, which made each of those rewrites a non-HOT update (1M customers, 25k rows
        # a night: 0.43-0.48 -> 0.29-0.37 s); the nightly job scans for it beside its other
        # reads (segments.jobs.touched_customer_ids).
        # last_order_at is not indexed (migration 0017): the nightly membership scope reads a
        # range of it covering about 1 % of the rows, which a scan of the table gives nearly as
        # fast (1M rows: 85 ms by the index, 110 ms without), while its index cost every
        # rewrite of a row about 4 us (35k rows: about 0.15 s a night).
        # refreshed_at is not indexed: every rewritten row changes it, and its index cost the
        # nightly write about 4 us a row (35.6k rows: about 0.15 s). The date of the last
        # refresh is in MetricsRefresh (migration 0015).

    def __str__(self) -> str:
        return f"metrics of {self.customer_id}"


class MetricsRefresh(models.Model):
    """One refresh of the customer metrics (crm.metrics.metrics_refresh): as of which date,
    full or for some customers, how many it aggregated, when it committed. The newest one dates
    the value deciles that the high-value list reads."""

    as_of = models.DateField(_("as of"), help_text=_("The metrics count events up to this day."))
    full = models.BooleanField(_("full rebuild"), default=False)
    customers = models.PositiveIntegerField(
        _("customers aggregated"), null=True, blank=True, help_text=_("Empty: not recorded.")
    )
    finished_at = models.DateTimeField(_("finished at"), default=timezone.now)

    class Meta:
        verbose_name = _("metrics refresh")
        verbose_name_plural = _("metrics refreshes")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"metrics as of {self.as_of}"


class RankBoundary(models.Model):
    """The last row of each of the first nine tiles of a global rank (value decile, suggested
    effort) after the last metrics refresh, as its sort key (value, customer id). An
    incremental refresh starts from these to move the ranks without sorting every customer
    (crm.metrics); a full refresh writes them again."""

    class Kind(models.TextChoices):
        DECILE = "decile", _("value decile")
        EFFORT = "effort", _("suggested effort")

    kind = models.CharField(_("rank"), max_length=8, choices=Kind.choices)
    tile = models.PositiveSmallIntegerField(_("tile"))
    value = models.DecimalField(_("value"), **MONEY)
    customer_id = models.BigIntegerField(_("customer id"))

    class Meta:
        verbose_name = _("rank boundary")
        verbose_name_plural = _("rank boundaries")
        constraints = [
            models.UniqueConstraint(fields=["kind", "tile"], name="rank_boundary_unique"),
            models.CheckConstraint(condition=Q(tile__range=(1, 9)), name="rank_boundary_tile_1_9"),
            models.CheckConstraint(
                condition=Q(kind__in=["decile", "effort"]), name="rank_boundary_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.tile}: {self.value} / {self.customer_id}"


class CohortContribution(models.Model):
    """Contribution of an acquisition-month cohort in one calendar month, summed over all its
    customers' orders and interactions. Maintained by crm.metrics: rebuilt by a full refresh,
    adjusted by the new orders and interactions of an incremental one.

    `units` is an exact integer in 1/6000 of the currency unit (margin x 6000 minus minutes x
    hourly cost x 100), so that sums added night after night equal a full rebuild exactly.
    """

    UNITS_PER_CURRENCY = 6000

    cohort = models.DateField(_("cohort"), help_text=_("First day of the acquisition month."))
    month = models.DateField(_("month"), help_text=_("First day of the calendar month."))
    units = models.BigIntegerField(_("contribution (1/6000)"), default=0)

    class Meta:
        verbose_name = _("cohort contribution")
        verbose_name_plural = _("cohort contributions")
        constraints = [
            models.UniqueConstraint(fields=["cohort", "month"], name="cohort_month_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.cohort:%Y-%m} in {self.month:%Y-%m}"
