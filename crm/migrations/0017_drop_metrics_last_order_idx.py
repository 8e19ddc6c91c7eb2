"""Drop the index of CustomerMetrics.last_order_at: the nightly membership scope's range of it
(about 1 % of the rows) costs about as much read by a scan of the table, while the index cost
every rewrite of a metrics row (crm.models.CustomerMetrics.Meta)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0016_social_totals_view"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="customermetrics", name="metrics_last_order_idx"),
    ]
