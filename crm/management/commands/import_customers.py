"""Import customers from a CSV file: `manage.py import_customers customers.csv`.

Also the shared base of import_orders and import_interactions: parse options, call the
service in crm.imports with a tqdm progress bar, print the report.
"""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from crm.imports import import_file


class ImportCommand(BaseCommand):
    kind = "customers"
    creates_customers = False

    def add_arguments(self, parser):
        parser.add_argument("path", help="CSV file, UTF-8 (with or without BOM), header row first")
        if self.creates_customers:
            parser.add_argument(
                "--create-customers",
                action="store_true",
                help="Create a bare customer for an unknown customer_ref instead of failing.",
            )

    def handle(self, *args, **options):
        try:
            handle = open(options["path"], "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise CommandError(f"Cannot open {options['path']}: {exc.strerror}")
        bar = tqdm(unit=" rows", desc=f"Importing {self.kind}", disable=options["verbosity"] < 1)
        with handle, bar:
            report = import_file(
                kind=self.kind,
                file=handle,
                create_customers=options.get("create_customers", False),
                progress=bar.update,
            )
        for line in report.error_lines():
            self.stderr.write(line)
        if not report.ok:
            raise CommandError(report.summary())
        rate = report.rows / report.seconds if report.seconds else 0
        self.stdout.write(
            self.style.SUCCESS(f"{report.summary()} ({report.seconds:.1f} s, {rate:,.0f} rows/s)")
        )


class Command(ImportCommand):
    help = "Import customers from a UTF-8 CSV file (all-or-nothing, upsert by external_id)."
