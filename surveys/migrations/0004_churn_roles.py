from django.db import migrations

from crm import roles

SUPPORT = [
    "surveys.view_churninterview",
    "surveys.add_churninterview",
    "surveys.change_churninterview",
    "surveys.view_reasoncode",
]
MANAGERS = SUPPORT + [
    "surveys.add_reasoncode",
    "surveys.change_reasoncode",
    "surveys.view_churn_report",
]


def grant(apps, schema_editor):
    roles.grant_permissions(apps, roles.SUPPORT, SUPPORT)
    roles.grant_permissions(apps, roles.MANAGERS, MANAGERS)


class Migration(migrations.Migration):
    dependencies = [
        ("surveys", "0003_churn_interviews"),
        ("crm", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
