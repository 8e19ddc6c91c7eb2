from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CrmConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "crm"
    verbose_name = _("CRM")

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from .roles import roles_sync

        post_migrate.connect(roles_sync, dispatch_uid="crm.roles_sync")
