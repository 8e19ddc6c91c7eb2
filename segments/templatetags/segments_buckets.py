"""{% customer_buckets customer %}: the customer's bucket, why, and membership history.

For screens of other apps (the customer page); one query.
"""

from django import template

from segments import selectors

register = template.Library()

HISTORY_ROWS = 20


@register.inclusion_tag("segments/_customer_bucket.html", takes_context=True)
def customer_buckets(context, customer):
    history = list(selectors.membership_history(customer)[:HISTORY_ROWS])
    current = next((m for m in history if m.left_on is None), None)
    return {
        "current": current,
        "history": history,
        "perms": context.get("perms"),
    }
