"""Drop the index of CustomerMetrics.recheck_on: every customer whose window moved gets a new
date, so with the index each of those nightly rewrites was a non-HOT update (all four indexes
written); without it most stay on their page (fill factor 85, migration 0010). The nightly job
finds the rows by a scan on its second connection instead (crm.models.CustomerMetrics.Meta)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0017_drop_metrics_last_order_idx"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="customermetrics", name="metrics_recheck_idx"),
    ]
