"""Streamed CSV downloads for every staff table: constant memory, formula-safe cells."""

import csv
from collections.abc import Iterable

from django.http import StreamingHttpResponse

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    """A file-like object whose write() hands the formatted line back to the caller."""

    def write(self, value):
        return value


def csv_safe(value):
    """Neutralise spreadsheet formulas in text cells (CSV injection); None becomes empty."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_response(
    *, filename: str, header: Iterable, rows: Iterable[Iterable]
) -> StreamingHttpResponse:
    """A streaming text/csv attachment: the header, then each row with every cell made safe.

    `rows` should be lazy (a generator or a queryset iterator) so that memory stays flat.
    """
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow([str(label) for label in header])
        for row in rows:
            yield writer.writerow([csv_safe(value) for value in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
