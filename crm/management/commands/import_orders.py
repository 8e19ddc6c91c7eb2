"""Import orders from a CSV file: `manage.py import_orders orders.csv [--create-customers]`."""

from crm.management.commands.import_customers import ImportCommand


class Command(ImportCommand):
    help = "Import orders from a UTF-8 CSV file (all-or-nothing, idempotent by external_id)."
    kind = "orders"
    creates_customers = True
