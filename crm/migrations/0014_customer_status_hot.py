"""The customer's status in no index, and room on the customer table's pages: HOT updates.

The nightly job copies each status it moves into crm_customer (a few thousand rows a day at
1M customers). With the status in an index, every copy was a new row version with an entry in
each of the table's 13 indexes (470 ms for 8.7k rows); with no index on the status and a fill
factor of 90 it stays on its own page and touches no index (47 ms). The customer list filters
by status (three values: a page of matches is a few hundred rows into the list order) and no
longer sorts by it. A table loaded before this migration keeps its packed pages until rows
move off them (each night's non-HOT copies free their old slots) or it is rewritten
(VACUUM FULL crm_customer, which locks the table).
"""

from django.db import migrations

FILLFACTOR = 90


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE crm_customer SET (fillfactor = {FILLFACTOR})")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE crm_customer RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0013_running_sum_aggregate"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="customer", name="customer_status_idx"),
        migrations.RunPython(set_fillfactor, reset_fillfactor, elidable=True),
    ]
