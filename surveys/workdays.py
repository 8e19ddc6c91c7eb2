"""Working-day arithmetic: pure, Saturdays and Sundays are not working days."""

import datetime as dt


def add_working_days(start: dt.date, days: int) -> dt.date:
    """The date `days` working days after `start` (Friday + 2 -> Tuesday; Saturday + 2 ->
    Tuesday)."""
    current = start
    remaining = days
    while remaining > 0:
        current += dt.timedelta(days=1)
        if current.weekday() < 5:
            remaining -= 1
    return current
