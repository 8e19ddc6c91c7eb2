"""manage.py recalculate_roi [--date YYYY-MM-DD] [--full]: run the nightly ROI job now."""

import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from segments.jobs import STEPS, roi_recalculate


class Command(BaseCommand):
    help = "Refresh customer metrics, bucket membership and the ROI snapshots of a date."

    def add_arguments(self, parser):
        parser.add_argument("--date", dest="as_of", help="Snapshot date YYYY-MM-DD (default today)")
        parser.add_argument(
            "--full", action="store_true", help="Recompute every customer, not only changes"
        )

    def handle(self, *args, as_of=None, full=False, verbosity=1, **options):
        bar = tqdm(total=len(STEPS), unit="step", disable=verbosity < 1, file=sys.stderr)
        started: list[str] = []

        def progress(step: str) -> None:
            if started:
                bar.update(1)  # the previous step is done
            started.append(step)
            bar.set_description(step)

        try:
            run = roi_recalculate(as_of=as_of, full=full, progress=progress)
            if run.status == run.Status.SUCCEEDED:
                bar.update(bar.total - bar.n)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages))
        finally:
            bar.close()
        if run.status != run.Status.SUCCEEDED:
            raise CommandError(run.error)
        counts = run.counts
        self.stdout.write(
            self.style.SUCCESS(
                f"ROI as of {run.as_of} ({run.mode}): {counts.get('customers_refreshed', 0)} "
                f"customers refreshed, {counts.get('snapshots', 0)} snapshots written."
            )
        )
