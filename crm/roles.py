"""The two staff roles (Django groups) and the permissions each holds.

Superusers are administrators. Apps above crm grant their own permissions to these groups
from their own data migrations with `grant_permissions`, so each app owns its part.
"""

SUPPORT = "Support staff"
MANAGERS = "Managers"

SUPPORT_PERMISSIONS = [
    "crm.view_customer",
    "crm.change_customer",
    "crm.view_socialprofile",
    "crm.add_socialprofile",
    "crm.change_socialprofile",
    "crm.delete_socialprofile",
    "crm.view_order",
    "crm.view_interaction",
    "crm.add_interaction",
    "crm.view_ownerchange",
    "crm.view_ratingchange",
    "crm.view_followup",
    "crm.add_followup",
    "crm.change_followup",
]

MANAGER_PERMISSIONS = SUPPORT_PERMISSIONS + [
    "crm.add_customer",
    "crm.add_order",
    "crm.assign_owner",
    "crm.override_influence",
    "crm.import_data",
    "crm.view_high_value",
]


def grant_permissions(apps, group_name: str, permissions: list[str]) -> None:
    """For data migrations: ensure the group exists and holds these "app.codename" permissions.

    Permissions are normally created after migrate; creating them here first lets a data
    migration grant them on a fresh database.
    """
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=group_name)
    for dotted in permissions:
        app_label, codename = dotted.split(".", 1)
        perm = Permission.objects.get(content_type__app_label=app_label, codename=codename)
        group.permissions.add(perm)
