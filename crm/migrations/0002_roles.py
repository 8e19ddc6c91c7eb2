from django.db import migrations

from crm import roles


def create_roles(apps, schema_editor):
    roles.grant_permissions(apps, roles.SUPPORT, roles.SUPPORT_PERMISSIONS)
    roles.grant_permissions(apps, roles.MANAGERS, roles.MANAGER_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(create_roles, migrations.RunPython.noop),
    ]
