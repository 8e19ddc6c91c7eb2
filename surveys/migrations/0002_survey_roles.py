from django.db import migrations

from crm import roles

SUPPORT = ["surveys.view_survey", "surveys.view_results", "surveys.view_campaign"]
MANAGERS = SUPPORT + [
    "surveys.add_survey",
    "surveys.change_survey",
    "surveys.add_campaign",
    "surveys.change_campaign",
]


def grant(apps, schema_editor):
    roles.grant_permissions(apps, roles.SUPPORT, SUPPORT)
    roles.grant_permissions(apps, roles.MANAGERS, MANAGERS)


class Migration(migrations.Migration):
    dependencies = [
        ("surveys", "0001_surveys_invitations_responses"),
        ("crm", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
