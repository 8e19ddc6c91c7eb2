"""JobRun.aggregates, and on PostgreSQL the trigger that clears it when the metrics table is
written by anything but the nightly job.

The job moves the ROI sums of the last run by the rows it wrote (segments.jobs). That is exact
only if nothing else wrote crm_customermetrics since: a customer deleted in the admin takes its
metrics row with it, for instance. A statement-level trigger (one call per statement, no rows
captured) clears every stored JobRun.aggregates after such a write; the next run then
aggregates the whole table again. The job marks its own statements with the transaction-local
setting segments.roi_job = 'on'. SQLite (make run's embedded default) has no trigger: the job
never reuses the sums there.
"""

from django.db import migrations, models

CREATE = [
    """
CREATE OR REPLACE FUNCTION segments_aggregates_invalidate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('segments.roi_job', true) IS DISTINCT FROM 'on' THEN
        UPDATE segments_jobrun SET aggregates = NULL WHERE aggregates IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$""",
    "DROP TRIGGER IF EXISTS segments_aggregates_invalidate ON crm_customermetrics",
    """CREATE TRIGGER segments_aggregates_invalidate
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON crm_customermetrics
FOR EACH STATEMENT EXECUTE FUNCTION segments_aggregates_invalidate()""",
]
DROP = [
    "DROP TRIGGER IF EXISTS segments_aggregates_invalidate ON crm_customermetrics",
    "DROP FUNCTION IF EXISTS segments_aggregates_invalidate()",
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in CREATE:
            schema_editor.execute(statement)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in DROP:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("segments", "0007_restore_one_open_membership"),
        ("crm", "0013_running_sum_aggregate"),
    ]

    operations = [
        migrations.AddField(
            model_name="jobrun",
            name="aggregates",
            field=models.JSONField(
                blank=True,
                editable=False,
                help_text=(
                    "The sums of the metrics table this run left "
                    "(segments.selectors.RoiAggregates), from which the next incremental run "
                    "moves them. Cleared when anything else writes the metrics table."
                ),
                null=True,
                verbose_name="aggregates",
            ),
        ),
        migrations.RunPython(create, drop),
    ]
