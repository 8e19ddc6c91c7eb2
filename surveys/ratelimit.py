"""A fixed-window request counter per client IP in the Django cache (public survey pages)."""

import time

from django.conf import settings
from django.core.cache import cache

DEFAULT_LIMIT = 120  # requests per window per IP; a customer needs about five
DEFAULT_WINDOW = 60  # seconds


def client_ip(request) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it.
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def rate_limit_exceeded(request, *, scope: str = "survey") -> bool:
    """Count this request; True when the IP went over the limit in the current window."""
    limit = getattr(settings, "SURVEYS_RATE_LIMIT", DEFAULT_LIMIT)
    window = getattr(settings, "SURVEYS_RATE_WINDOW", DEFAULT_WINDOW)
    if not limit:
        return False
    bucket = int(time.time() // window)
    key = f"rl:{scope}:{client_ip(request)}:{bucket}"
    if cache.add(key, 1, timeout=window + 1):
        return False
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window + 1)
        return False
    return count > limit
