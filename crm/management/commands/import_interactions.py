"""Import interactions from a CSV file: `manage.py import_interactions interactions.csv`."""

from crm.management.commands.import_customers import ImportCommand


class Command(ImportCommand):
    help = "Import interactions from a UTF-8 CSV file (all-or-nothing, idempotent by external_id)."
    kind = "interactions"
    creates_customers = True
