"""NPS per bucket for the nightly ROI snapshots (segments.jobs.register_nps_provider).

segments sits below surveys and may not import it, so surveys hands segments this provider
from SurveysConfig.ready(). Registered as a plain function: the job calls it inside its own
transaction, after bucket membership has been refreshed.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, Q

from crm.metrics import metrics_params

from .models import Answer, QuestionKind

NPS_PLACES = Decimal("0.01")


def nps_for_snapshot(*, as_of: dt.date) -> dict[int | None, Decimal | None]:
    """NPS of each current bucket (None = Unsegmented) over the NPS answers of responses
    finished in the metrics window ending on `as_of` (the same trailing window as the money).

    One grouped query. NPS = % of 9-10 minus % of 0-6 among the answers given (skipped
    questions have no Answer row, so they are in no denominator), to two decimals; buckets
    without answers are left out (their snapshot NPS stays empty).
    """
    bounds = metrics_params(as_of)
    bucket = "response__customer__current_membership__bucket_id"
    rows = (
        Answer.objects.filter(
            kind=QuestionKind.NPS,
            value_int__isnull=False,
            response__finished_at__gte=bounds["window_start"],
            response__finished_at__lt=bounds["end_ts"],
        )
        .values(bucket)
        .annotate(
            total=Count("id"),
            promoters=Count("id", filter=Q(value_int__gte=9)),
            detractors=Count("id", filter=Q(value_int__lte=6)),
        )
        .order_by()
    )
    out: dict[int | None, Decimal | None] = {}
    for row in rows:
        if not row["total"]:
            continue
        score = Decimal(100) * (row["promoters"] - row["detractors"]) / row["total"]
        out[row[bucket]] = score.quantize(NPS_PLACES, rounding=ROUND_HALF_UP)
    return out
