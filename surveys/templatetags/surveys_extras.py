from django import template

from surveys import scores

register = template.Library()


@register.filter
def pct_of(part, whole):
    """ "37 %" or an em dash when the denominator is zero."""
    value = scores.share_pct(int(part or 0), int(whole or 0))
    return "—" if value is None else f"{value} %"


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if mapping else None
