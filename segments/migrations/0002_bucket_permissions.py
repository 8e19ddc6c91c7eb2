from django.db import migrations

from crm import roles


def grant(apps, schema_editor):
    roles.grant_permissions(apps, roles.SUPPORT, ["segments.view_bucket"])
    roles.grant_permissions(
        apps,
        roles.MANAGERS,
        [
            "segments.add_bucket",
            "segments.change_bucket",
            "segments.delete_bucket",
            "segments.view_bucket",
            "segments.view_roi",
        ],
    )


class Migration(migrations.Migration):
    dependencies = [
        ("segments", "0001_buckets"),
        ("crm", "0002_roles"),
    ]

    operations = [
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
