"""crm.SocialTotal: each customer's followers over their social profiles, a view (the same SQL
on PostgreSQL and SQLite)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0015_metrics_refresh"),
    ]

    operations = [
        migrations.CreateModel(
            name="SocialTotal",
            fields=[
                (
                    "customer",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="social_total",
                        serialize=False,
                        to="crm.customer",
                        verbose_name="customer",
                    ),
                ),
                ("followers", models.BigIntegerField(verbose_name="followers")),
            ],
            options={
                "verbose_name": "social total",
                "verbose_name_plural": "social totals",
                "db_table": "crm_social_totals",
                "managed": False,
            },
        ),
        migrations.RunSQL(
            "CREATE VIEW crm_social_totals AS SELECT customer_id, SUM(followers) AS followers "
            "FROM crm_socialprofile GROUP BY customer_id",
            "DROP VIEW crm_social_totals",
        ),
    ]
