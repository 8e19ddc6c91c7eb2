"""Restore the database constraint "one open membership row per customer".

0006 set db_index=False on BucketMembership.customer. Django's AlterField then drops every
single-column index on that column that is not in Meta.indexes, and the constraint's partial
unique index (customer_id) WHERE left_on IS NULL is one: databases migrated through 0006 lost
it while the migration state kept it. This adds it back where it is missing. The state is
unchanged; crm.tests.test_schema checks that every model constraint and index exists.
"""

from django.db import migrations

NAME = "bucketmembership_one_open_per_customer"


def restore(apps, schema_editor):
    model = apps.get_model("segments", "BucketMembership")
    table = model._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        existing = schema_editor.connection.introspection.get_constraints(cursor, table)
    if NAME not in existing:
        constraint = next(c for c in model._meta.constraints if c.name == NAME)
        schema_editor.add_constraint(model, constraint)


class Migration(migrations.Migration):
    dependencies = [("segments", "0006_fk_indexes_covered")]

    operations = [migrations.RunPython(restore, migrations.RunPython.noop)]
