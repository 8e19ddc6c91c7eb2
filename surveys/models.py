"""Feedback surveys: survey definitions, campaigns, personal invitations and responses.

Models hold data and constraints; rules live in services.py (writes) and selectors.py (reads).
Survey links carry a random token; only its SHA-256 hex digest is stored (surveys/tokens.py).
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

MAX_TEXT_ANSWER = 5000


class QuestionKind(models.TextChoices):
    NPS = "nps", _("NPS (0-10)")
    CSAT = "csat", _("CSAT (1-5)")
    CES = "ces", _("CES (1-7, the company made it easy for me)")
    RATING = "rating", _("Rating (scale)")
    SINGLE = "single", _("Single choice")
    MULTIPLE = "multiple", _("Multiple choice")
    TEXT = "text", _("Free text")


# Fixed scales of the standard scores; "rating" questions carry their own.
FIXED_SCALES = {QuestionKind.NPS: (0, 10), QuestionKind.CSAT: (1, 5), QuestionKind.CES: (1, 7)}
SCALED_KINDS = {QuestionKind.NPS, QuestionKind.CSAT, QuestionKind.CES, QuestionKind.RATING}
CHOICE_KINDS = {QuestionKind.SINGLE, QuestionKind.MULTIPLE}


def _localized(obj, field: str) -> str:
    """The Korean text when the active language is Korean and it is filled in, else English."""
    if (get_language() or "en").startswith("ko"):
        value = getattr(obj, f"{field}_ko", "")
        if value:
            return value
    return getattr(obj, f"{field}_en")


class Survey(models.Model):
    title_en = models.CharField(_("title (English)"), max_length=200)
    title_ko = models.CharField(_("title (Korean)"), max_length=200, blank=True)
    intro_en = models.TextField(_("introduction (English)"), blank=True, max_length=2000)
    intro_ko = models.TextField(_("introduction (Korean)"), blank=True, max_length=2000)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("survey")
        verbose_name_plural = _("surveys")
        ordering = ["-created_at", "-id"]
        permissions = [("view_results", _("Can view survey results"))]

    def __str__(self) -> str:
        return self.title_en

    @property
    def title(self) -> str:
        return _localized(self, "title")

    @property
    def intro(self) -> str:
        return _localized(self, "intro")


class Question(models.Model):
    """One question. `options` (choice kinds) is a list of {"value", "en", "ko"} objects."""

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="questions")
    order = models.PositiveSmallIntegerField(_("order"))
    kind = models.CharField(_("kind"), max_length=16, choices=QuestionKind.choices)
    text_en = models.CharField(_("text (English)"), max_length=500)
    text_ko = models.CharField(_("text (Korean)"), max_length=500, blank=True)
    required = models.BooleanField(_("required"), default=True)
    options = models.JSONField(_("options"), default=list, blank=True)
    scale_min = models.SmallIntegerField(_("scale minimum"), null=True, blank=True)
    scale_max = models.SmallIntegerField(_("scale maximum"), null=True, blank=True)

    class Meta:
        verbose_name = _("question")
        verbose_name_plural = _("questions")
        ordering = ["survey", "order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["survey", "order"], name="question_order_unique"),
            models.CheckConstraint(
                condition=Q(kind__in=QuestionKind.values), name="question_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(scale_min__isnull=True)
                | Q(scale_max__isnull=True)
                | Q(scale_min__lt=F("scale_max")),
                name="question_scale_ordered",
            ),
            models.CheckConstraint(
                condition=~Q(kind="rating")
                | (Q(scale_min__isnull=False) & Q(scale_max__isnull=False)),
                name="question_rating_has_scale",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order}. {self.text_en}"

    @property
    def text(self) -> str:
        return _localized(self, "text")

    @property
    def scale(self) -> tuple[int, int] | None:
        if self.kind in FIXED_SCALES:
            return FIXED_SCALES[self.kind]
        if self.kind == QuestionKind.RATING:
            return (self.scale_min, self.scale_max)
        return None

    @property
    def scale_values(self) -> list[int]:
        low_high = self.scale
        return list(range(low_high[0], low_high[1] + 1)) if low_high else []

    @property
    def localized_options(self) -> list[tuple[str, str]]:
        ko = (get_language() or "en").startswith("ko")
        return [
            (str(o["value"]), (o.get("ko") if ko and o.get("ko") else o.get("en", o["value"])))
            for o in self.options
        ]


class AudienceKind(models.TextChoices):
    BUCKET = "bucket", _("A bucket")
    FILTER = "filter", _("A filtered customer list")
    CUSTOMER = "customer", _("One customer")


class Campaign(models.Model):
    survey = models.ForeignKey(Survey, on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(_("name"), max_length=200)
    audience_kind = models.CharField(_("audience"), max_length=16, choices=AudienceKind.choices)
    audience_query = models.CharField(
        _("customer list filter"),
        max_length=2000,
        blank=True,
        help_text=_("The query string of the customer list, e.g. status=at_risk&city=Seoul."),
    )
    audience_customer = models.ForeignKey(
        "crm.Customer",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("customer"),
    )
    audience_bucket_id = models.BigIntegerField(_("bucket"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"))
    coupon_code = models.CharField(_("thank-you coupon code"), max_length=64, blank=True)
    reminder_after_days = models.PositiveSmallIntegerField(
        _("remind non-responders after (days)"),
        null=True,
        blank=True,
        default=7,
        help_text=_("Empty sends no reminder."),
    )
    invited_count = models.PositiveIntegerField(_("invited"), default=0)
    skipped_opt_out = models.PositiveIntegerField(_("skipped (opted out)"), default=0)
    skipped_no_email = models.PositiveIntegerField(_("skipped (no email)"), default=0)
    queued_at = models.DateTimeField(_("queued at"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(audience_kind__in=AudienceKind.values),
                name="campaign_audience_kind_valid",
            ),
            models.CheckConstraint(
                condition=Q(reminder_after_days__isnull=True)
                | Q(reminder_after_days__range=(1, 60)),
                name="campaign_reminder_1_60",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()


class Invitation(models.Model):
    """One customer invited by one campaign. Tokens are minted when the email is sent (the
    first email and the reminder each carry their own link); only their hashes are kept."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="invitations")
    customer = models.ForeignKey(
        "crm.Customer", on_delete=models.CASCADE, related_name="survey_invitations"
    )
    token_hash = models.CharField(max_length=64, null=True, blank=True, unique=True)
    reminder_token_hash = models.CharField(max_length=64, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    reminded_at = models.DateTimeField(_("reminded at"), null=True, blank=True)
    opened_at = models.DateTimeField(_("opened at"), null=True, blank=True)

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "customer"], name="invitation_campaign_customer_unique"
            )
        ]
        indexes = [
            models.Index(fields=["campaign", "sent_at"], name="invitation_campaign_sent_idx"),
            models.Index(fields=["customer"], name="invitation_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.customer_id}"


class ResponseDraft(models.Model):
    """Answers saved on POST before the response is finished, so the customer can resume."""

    invitation = models.OneToOneField(
        Invitation, on_delete=models.CASCADE, primary_key=True, related_name="draft"
    )
    data = models.JSONField(default=dict)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("draft response")
        verbose_name_plural = _("draft responses")

    def __str__(self) -> str:
        return f"draft {self.invitation_id}"


class Response(models.Model):
    """A finished response. One per invitation, enforced by the unique constraint."""

    invitation = models.ForeignKey(Invitation, on_delete=models.CASCADE, related_name="responses")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="responses")
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="responses")
    customer = models.ForeignKey(
        "crm.Customer", on_delete=models.CASCADE, related_name="survey_responses"
    )
    finished_at = models.DateTimeField(_("finished at"), default=timezone.now)
    language = models.CharField(_("language"), max_length=8, default="en")
    unhappy = models.BooleanField(
        _("unhappy"), default=False, help_text=_("An NPS answer 0-6 or a CSAT answer 1-2.")
    )
    recovered = models.BooleanField(
        _("recovered"),
        null=True,
        blank=True,
        help_text=_(
            "Set when the customer's previous response was unhappy: whether this one is not."
        ),
    )

    class Meta:
        verbose_name = _("response")
        verbose_name_plural = _("responses")
        ordering = ["-finished_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["invitation"], name="response_one_per_invitation")
        ]
        indexes = [
            models.Index(fields=["survey", "finished_at"], name="response_survey_at_idx"),
            models.Index(fields=["campaign", "finished_at"], name="response_campaign_at_idx"),
            models.Index(fields=["customer", "-finished_at"], name="response_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"response {self.pk} ({self.customer_id})"


class Answer(models.Model):
    """One answered question. Skipped questions have no row, so they leave every denominator."""

    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="answers")
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="answers")
    kind = models.CharField(max_length=16, choices=QuestionKind.choices)
    value_int = models.SmallIntegerField(null=True, blank=True)
    value_text = models.TextField(blank=True, max_length=MAX_TEXT_ANSWER)
    value_choices = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = _("answer")
        verbose_name_plural = _("answers")
        constraints = [
            models.UniqueConstraint(fields=["response", "question"], name="answer_once"),
            models.CheckConstraint(
                condition=~Q(kind="nps") | Q(value_int__range=(0, 10)), name="answer_nps_0_10"
            ),
            models.CheckConstraint(
                condition=~Q(kind="csat") | Q(value_int__range=(1, 5)), name="answer_csat_1_5"
            ),
            models.CheckConstraint(
                condition=~Q(kind="ces") | Q(value_int__range=(1, 7)), name="answer_ces_1_7"
            ),
            models.CheckConstraint(
                condition=LessThanOrEqual(Length("value_text"), MAX_TEXT_ANSWER),
                name="answer_text_max_5000",
            ),
        ]
        indexes = [models.Index(fields=["question", "value_int"], name="answer_question_idx")]

    def __str__(self) -> str:
        return f"{self.question_id}: {self.value_int or self.value_text or self.value_choices}"


# --- Churn interviews ---
# Owned by the churn-interview work (engineer D2). Imports are local to this section so that it
# can be appended below the survey models without touching their imports.
# isort: split
from django.conf import settings as _settings  # noqa: E402
from django.core.validators import MaxValueValidator, MinValueValidator  # noqa: E402
from django.db.models import Q as _Q  # noqa: E402
from django.utils import timezone as _timezone  # noqa: E402
from django.utils import translation as _translation  # noqa: E402
from django.utils.translation import gettext_lazy as _t  # noqa: E402

from crm.models import InteractionChannel as _InteractionChannel  # noqa: E402


def _pick_label(label_en: str, label_ko: str) -> str:
    """The Korean wording when the active language is Korean and one exists, else English."""
    language = _translation.get_language() or ""
    if language.startswith("ko") and label_ko:
        return label_ko
    return label_en


class ReasonCategory(models.TextChoices):
    PRICE = "price", _t("Price")
    PRODUCT = "product", _t("Product")
    SERVICE = "service", _t("Service")
    DELIVERY = "delivery", _t("Delivery")
    COMPETITOR = "competitor", _t("Competitor")
    NO_LONGER_NEEDS = "no_longer_needs", _t("Moved / no longer needs")
    OTHER = "other", _t("Other")


class ReasonCode(models.Model):
    """Why a customer left: a stable `code` and `category`, and wording that may change.

    Interviews copy the wording they were recorded with (see ChurnInterview), so rewording a
    code never re-labels old interviews. A code that is used cannot be deleted (PROTECT); it is
    deactivated instead, which hides it from new interviews.
    """

    code = models.SlugField(
        _t("code"), max_length=50, unique=True, help_text=_t("Stable key; never changes.")
    )
    category = models.CharField(_t("category"), max_length=20, choices=ReasonCategory.choices)
    label_en = models.CharField(_t("label (English)"), max_length=200)
    label_ko = models.CharField(_t("label (Korean)"), max_length=200, blank=True)
    is_active = models.BooleanField(_t("active"), default=True)
    created_at = models.DateTimeField(_t("created at"), default=_timezone.now)
    updated_at = models.DateTimeField(_t("updated at"), auto_now=True)

    class Meta:
        verbose_name = _t("churn reason code")
        verbose_name_plural = _t("churn reason codes")
        ordering = ["category", "code"]
        constraints = [
            models.CheckConstraint(
                condition=_Q(category__in=ReasonCategory.values), name="reasoncode_category_valid"
            ),
            models.CheckConstraint(condition=~_Q(label_en=""), name="reasoncode_label_en_set"),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return _pick_label(self.label_en, self.label_ko)


class WinbackOutcome(models.TextChoices):
    NO_OFFER = "none", _t("No offer made")
    PENDING = "pending", _t("Pending")
    ACCEPTED = "accepted", _t("Accepted")
    DECLINED = "declined", _t("Declined")


class ChurnInterview(models.Model):
    """A staff conversation with a customer who left. One per customer (the queue lists churned
    customers without one). The reason wording is copied at recording time (the *_label_*
    snapshot fields), so later rewording of a ReasonCode never changes this interview.
    """

    customer = models.ForeignKey(
        "crm.Customer",
        on_delete=models.CASCADE,
        related_name="churn_interviews",
        verbose_name=_t("customer"),
    )
    interviewer = models.ForeignKey(
        _settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="churn_interviews",
        verbose_name=_t("interviewer"),
    )
    interviewed_on = models.DateField(_t("interview date"))
    channel = models.CharField(_t("channel"), max_length=16, choices=_InteractionChannel.choices)
    primary_reason = models.ForeignKey(
        ReasonCode,
        on_delete=models.PROTECT,
        related_name="primary_interviews",
        verbose_name=_t("primary reason"),
    )
    primary_reason_label_en = models.CharField(
        _t("primary reason as worded (English)"), max_length=200
    )
    primary_reason_label_ko = models.CharField(
        _t("primary reason as worded (Korean)"), max_length=200, blank=True
    )
    secondary_reasons = models.ManyToManyField(
        ReasonCode,
        through="ChurnSecondaryReason",
        related_name="secondary_interviews",
        blank=True,
        verbose_name=_t("secondary reasons"),
    )
    competitor = models.CharField(_t("competitor"), max_length=200, blank=True)
    verbatim = models.TextField(_t("verbatim"), max_length=4000, blank=True)
    liked = models.TextField(_t("what they liked"), max_length=2000, blank=True)
    bring_back = models.TextField(_t("what would bring them back"), max_length=2000, blank=True)
    likelihood_to_return = models.PositiveSmallIntegerField(
        _t("likelihood to return (0-10)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(10)],
    )
    winback_offer = models.TextField(_t("win-back offer made"), max_length=2000, blank=True)
    winback_outcome = models.CharField(
        _t("win-back offer accepted"),
        max_length=16,
        choices=WinbackOutcome.choices,
        default=WinbackOutcome.NO_OFFER,
    )
    follow_up_on = models.DateField(_t("follow-up date"), null=True, blank=True)
    follow_up = models.ForeignKey(
        "crm.FollowUp",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_t("follow-up"),
    )
    created_by = models.ForeignKey(
        _settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(_t("created at"), default=_timezone.now)
    updated_at = models.DateTimeField(_t("updated at"), auto_now=True)

    class Meta:
        verbose_name = _t("churn interview")
        verbose_name_plural = _t("churn interviews")
        ordering = ["-interviewed_on", "-id"]
        permissions = [("view_churn_report", _t("Can view the churn report"))]
        constraints = [
            models.UniqueConstraint(fields=["customer"], name="churninterview_one_per_customer"),
            models.CheckConstraint(
                condition=_Q(likelihood_to_return__isnull=True)
                | _Q(likelihood_to_return__range=(0, 10)),
                name="churninterview_likelihood_0_10",
            ),
            models.CheckConstraint(
                condition=_Q(channel__in=_InteractionChannel.values),
                name="churninterview_channel_valid",
            ),
            models.CheckConstraint(
                condition=_Q(winback_outcome__in=WinbackOutcome.values),
                name="churninterview_outcome_valid",
            ),
            # An outcome only where an offer was made, and every offer has an outcome.
            models.CheckConstraint(
                condition=(_Q(winback_offer="") & _Q(winback_outcome="none"))
                | (~_Q(winback_offer="") & ~_Q(winback_outcome="none")),
                name="churninterview_offer_has_outcome",
            ),
        ]
        indexes = [
            models.Index(fields=["interviewed_on"], name="churninterview_date_idx"),
            models.Index(
                fields=["primary_reason", "interviewed_on"], name="churninterview_reason_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.interviewed_on}: {self.primary_reason_label_en}"

    @property
    def primary_reason_label(self) -> str:
        return _pick_label(self.primary_reason_label_en, self.primary_reason_label_ko)


class ChurnSecondaryReason(models.Model):
    """A secondary reason of an interview, with its wording at recording time."""

    interview = models.ForeignKey(
        ChurnInterview, on_delete=models.CASCADE, related_name="secondary_reason_links"
    )
    reason = models.ForeignKey(ReasonCode, on_delete=models.PROTECT, related_name="+")
    label_en = models.CharField(_t("reason as worded (English)"), max_length=200)
    label_ko = models.CharField(_t("reason as worded (Korean)"), max_length=200, blank=True)

    class Meta:
        verbose_name = _t("secondary churn reason")
        verbose_name_plural = _t("secondary churn reasons")
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["interview", "reason"], name="churnsecondary_unique_reason"
            )
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return _pick_label(self.label_en, self.label_ko)
