"""The two staff roles (Django groups) and the permissions each holds.

Superusers are administrators. The groups are created by crm's data migration; apps above crm
grant their own permissions from their own data migrations with `grant_permissions`, and
declare them in `<app>/roles.py` as ROLE_PERMISSIONS. After every migrate (and every test
flush) `roles_sync` makes sure both groups exist and hold every declared permission, so a
permission added later reaches the roles without a hand-made step.
"""

from importlib import import_module

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


ROLE_PERMISSIONS = {SUPPORT: SUPPORT_PERMISSIONS, MANAGERS: MANAGER_PERMISSIONS}


def declared_role_permissions(app_configs) -> dict[str, set[str]]:
    """Every app's ROLE_PERMISSIONS (from `<app>.roles`), merged per group."""
    merged: dict[str, set[str]] = {SUPPORT: set(), MANAGERS: set()}
    for app_config in app_configs:
        try:
            module = import_module(f"{app_config.name}.roles")
        except ModuleNotFoundError:
            continue
        for group_name, perms in getattr(module, "ROLE_PERMISSIONS", {}).items():
            merged.setdefault(group_name, set()).update(perms)
    return merged


def roles_sync(*, sender=None, using: str = "default", **kwargs) -> None:
    """post_migrate handler: ensure both groups hold every declared permission (adds only).

    post_migrate is sent once per app; this acts on the last app's signal, when every app's
    permissions exist. Idempotent. Permissions that an administrator removed by hand come back
    on the next migrate: roles are defined in code, not in the database.
    """
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    app_configs = list(global_apps.get_app_configs())
    if sender is not None and sender.label != app_configs[-1].label:
        return
    for app_config in app_configs:
        create_permissions(app_config, verbosity=0, using=using)
    for group_name, perms in declared_role_permissions(app_configs).items():
        group, _ = Group.objects.using(using).get_or_create(name=group_name)
        wanted = {tuple(p.split(".", 1)) for p in perms}
        ids = [
            pk
            for pk, app_label, codename in Permission.objects.using(using).values_list(
                "pk", "content_type__app_label", "codename"
            )
            if (app_label, codename) in wanted
        ]
        group.permissions.add(*ids)


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
