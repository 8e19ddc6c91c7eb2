from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SurveysConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "surveys"
    verbose_name = _("Surveys")

    def ready(self):
        # segments may not import surveys: hand the nightly ROI job our NPS per bucket.
        from segments.jobs import register_nps_provider

        from .snapshot_nps import nps_for_snapshot

        register_nps_provider(nps_for_snapshot)

        # ...and the bucket-rule field latest_nps_category (segments' rule registry).
        from .rule_fields import register as register_rule_fields

        register_rule_fields()
