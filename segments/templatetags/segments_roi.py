"""{% roi_history_rows bucket as rows %}: lets templates/segments/_roi_history.html be included
with only `bucket` in the context (one query, through the selector)."""

from django import template

from segments import selectors

register = template.Library()


@register.simple_tag
def roi_history_rows(bucket):
    if bucket is None or getattr(bucket, "pk", None) is None:
        return []
    return selectors.roi_history(bucket)


@register.filter
def roi_chart_data(rows):
    """The rows as {"labels", "roi", "contribution"} for json_script."""
    return {
        "labels": [r.date.isoformat() for r in rows],
        "roi": [float(r.roi) if r.roi is not None else None for r in rows],
        "contribution": [float(r.contribution) for r in rows],
    }
