"""Dates as readers see them: English month and weekday names, in UTC, whatever the locale."""

from datetime import UTC, date, datetime

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def month_day(moment: datetime, *, year: bool = False) -> str:
    """``Nov 24`` (or ``Nov 24, 2026``) in UTC."""
    utc = moment.astimezone(UTC)
    day = f"{MONTHS[utc.month - 1]} {utc.day}"
    return f"{day}, {utc.year}" if year else day


def weekday_month_day(day: date) -> str:
    """``Tue Nov 24``."""
    return f"{WEEKDAYS[day.weekday()]} {MONTHS[day.month - 1]} {day.day}"
