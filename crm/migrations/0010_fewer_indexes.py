"""Fewer indexes on the metrics table, and room for HOT updates.

Value decile, buyer type and preferred channel have ten values or fewer: a filter on them
reads a tenth or more of the table, which no index makes faster than walking the customers in
list order. Each index makes every rewrite of a row write one more index entry, and the
decile one made each rank change a non-HOT update. With a fill factor of 85, pages keep room
for the nightly job's updates of unindexed columns (status, ranks, bucket) on the same page.
"""

from django.db import migrations

FILLFACTOR = 85


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE crm_customermetrics SET (fillfactor = {FILLFACTOR})")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE crm_customermetrics RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0009_metrics_recheck"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="customermetrics", name="metrics_decile_idx"),
        migrations.RemoveIndex(model_name="customermetrics", name="metrics_buyer_type_idx"),
        migrations.RemoveIndex(model_name="customermetrics", name="metrics_channel_idx"),
        migrations.RunPython(set_fillfactor, reset_fillfactor, elidable=True),
    ]
