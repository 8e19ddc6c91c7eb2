from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations


class Migration(migrations.Migration):
    """pg_trgm for customer search on PostgreSQL; a no-op on SQLite."""

    dependencies = [("crm", "0002_roles")]

    operations = [TrigramExtension()]
