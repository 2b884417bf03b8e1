"""Cron schedules as the backup scheduler reads them, and their longest gap, computed.

The scheduler is swarm-cronjob (crazy-max/swarm-cronjob v1.14.0, internal/app/app.go), which
parses schedules with robfig/cron v3.0.1 (``SecondOptional | Minute | Hour | Dom | Month | Dow |
Descriptor``). ``parse`` accepts what that parser accepts in five fields (parser.go getField,
getRange, parseIntOrName; bounds and names in spec.go): comma-separated ranges of ``*``, ``?``,
a number or a name, ``a-b``, each with an optional ``/step`` (``a/step`` means ``a-max/step``).
No ``L``, ``W``, ``#``, ``H`` or ``R``, and no day of week 7: croniter accepts those, the
scheduler refuses the schedule, and a backup that is never started raises no error anywhere.

Days match as spec.go dayMatches decides: when the day-of-month or the day-of-week field was
written with a ``*`` or ``?`` (``*/1`` included, ``*/2`` not: a step above 1 clears the star,
getRange), a day must match both fields; otherwise either.

``longest_gap_seconds`` is exact: the times of day are the product of the minute and hour
fields, and the days repeat with the Gregorian calendar's 400-year cycle (146,097 days, a whole
number of weeks), so the longest gap between two runs is found by walking the cycle's months
once, each month's matching days taken from a table keyed by what decides them (month, length,
weekday of the 1st).
"""

from __future__ import annotations

import calendar
import itertools
from dataclasses import dataclass
from functools import lru_cache

from config.errors import show

MONTH_NAMES = {name.lower(): index for index, name in enumerate(calendar.month_abbr) if name}
DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


@dataclass(frozen=True)
class _Bounds:
    label: str
    low: int
    high: int
    names: dict[str, int] | None = None


FIELDS = (
    _Bounds("minute", 0, 59),
    _Bounds("hour", 0, 23),
    _Bounds("day of month", 1, 31),
    _Bounds("month", 1, 12, MONTH_NAMES),
    _Bounds("day of week", 0, 6, DAY_NAMES),
)
CYCLE_YEARS = 400
CYCLE_START = 2000  # 2000-01-01, a Saturday: any start works, the cycle repeats whole weeks
DAY_S = 86400


class CronError(ValueError):
    """A schedule the scheduler's parser refuses, or one that never runs; the message says why."""


@dataclass(frozen=True)
class Schedule:
    """A parsed 5-field schedule: the values each field allows, and whether a day field was a star."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    """0 is Sunday."""
    day_of_month_star: bool
    day_of_week_star: bool

    def day_matches(self, day: int, weekday: int) -> bool:
        """spec.go dayMatches: both day fields when either was a star, otherwise either."""
        in_month = day in self.days_of_month
        in_week = weekday in self.days_of_week
        if self.day_of_month_star or self.day_of_week_star:
            return in_month and in_week
        return in_month or in_week


def parse(expression: str) -> Schedule:
    """The schedule robfig/cron v3.0.1 reads from ``expression`` (five fields), or CronError."""
    fields = expression.split()
    if len(fields) != len(FIELDS):
        raise CronError(f"{len(fields)} fields; the scheduler reads minute, hour, day of month, month, day of week")
    parsed = [_field(text, bounds) for text, bounds in zip(fields, FIELDS, strict=True)]
    (minutes, _), (hours, _), (days_of_month, dom_star), (months, _), (days_of_week, dow_star) = parsed
    return Schedule(minutes, hours, days_of_month, months, days_of_week, dom_star, dow_star)


def _field(text: str, bounds: _Bounds) -> tuple[frozenset[int], bool]:
    """parser.go getField: the union of comma-separated ranges, and whether one kept the star."""
    values: set[int] = set()
    star = False
    ranges = [part for part in text.split(",") if part]  # strings.FieldsFunc drops empty parts
    if not ranges:
        raise CronError(f"{bounds.label}: {show(text)} names no value")
    for part in ranges:
        found, part_star = _range(part, bounds)
        values |= found
        star = star or part_star
    return frozenset(values), star


def _range(text: str, bounds: _Bounds) -> tuple[set[int], bool]:
    """parser.go getRange."""
    where = f"{bounds.label} {show(text)}"
    range_and_step = text.split("/")
    low_and_high = range_and_step[0].split("-")
    star = low_and_high[0] in ("*", "?")
    if star:
        start, end = bounds.low, bounds.high
    else:
        start = _number(low_and_high[0], bounds, where)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _number(low_and_high[1], bounds, where)
        else:
            raise CronError(f"{where}: too many hyphens")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _number(range_and_step[1], None, where)
        if len(low_and_high) == 1:
            end = bounds.high  # "N/step" means "N-max/step"
        if step > 1:
            star = False
    else:
        raise CronError(f"{where}: too many slashes")
    if start < bounds.low:
        raise CronError(f"{where}: {start} is below {bounds.low}")
    if end > bounds.high:
        raise CronError(f"{where}: {end} is above {bounds.high}")
    if start > end:
        raise CronError(f"{where}: the range starts after it ends")
    if step == 0:
        raise CronError(f"{where}: a step must be a positive number")
    return set(range(start, end + 1, step)), star


def _number(text: str, bounds: _Bounds | None, where: str) -> int:
    """parser.go parseIntOrName and mustParseInt (Go's strconv.Atoi: an optional sign, ASCII digits)."""
    if bounds is not None and bounds.names and text.lower() in bounds.names:
        return bounds.names[text.lower()]
    digits = text[1:] if text[:1] in "+-" else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise CronError(f"{where}: {show(text)} is not a number" + (" or a name" if bounds and bounds.names else ""))
    number = int(text)
    if number < 0:
        raise CronError(f"{where}: negative numbers are not allowed")
    return number


def longest_gap_seconds(expression: str) -> int:
    """The longest time between two consecutive runs of ``expression`` (UTC), in seconds.

    The longest, not the first, so that an irregular schedule (weekdays only) allows for its
    weekend. CronError if the scheduler refuses the expression or it names no day that exists.
    """
    return _longest_gap(parse(expression))


@lru_cache(maxsize=64)
def _longest_gap(schedule: Schedule) -> int:
    times = sorted(hour * 3600 + minute * 60 for hour in schedule.hours for minute in schedule.minutes)
    within_day = max((later - earlier for earlier, later in itertools.pairwise(times)), default=0)
    days = _longest_day_gap(schedule)
    # From a day's last run to the next matching day's first.
    return max(within_day, days * DAY_S - (times[-1] - times[0]))


def _longest_day_gap(schedule: Schedule) -> int:
    """The most days between two consecutive matching days, over the whole 400-year cycle."""
    first_match: int | None = None
    previous: int | None = None
    longest = 0
    ordinal = 0  # days since the cycle's start
    weekday = (calendar.weekday(CYCLE_START, 1, 1) + 1) % 7  # of January 1st; Sunday 0, as cron counts
    for year in range(CYCLE_START, CYCLE_START + CYCLE_YEARS):
        leap = calendar.isleap(year)
        days = _year_matches(schedule, weekday, leap)
        if days is not None:
            first, last, inner = days
            if previous is None:
                first_match = ordinal + first
            else:
                longest = max(longest, ordinal + first - previous)
            longest = max(longest, inner)
            previous = ordinal + last
        ordinal += 366 if leap else 365
        weekday = (weekday + (2 if leap else 1)) % 7
    if first_match is None or previous is None:
        raise CronError("no day matches: the days of month named never fall in the months named")
    return max(longest, first_match + ordinal - previous)  # across the cycle's end


_LENGTHS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_LEAP_LENGTHS = (31, 29, *_LENGTHS[2:])


@lru_cache(maxsize=256)
def _year_matches(schedule: Schedule, first_weekday: int, leap: bool) -> tuple[int, int, int] | None:
    """In a year whose January 1st falls on ``first_weekday``: the first and last matching day
    (0-based) and the longest gap between two matching days, or None if no day matches. Only 14
    kinds of year exist (7 weekdays, leap or not)."""
    matches: list[int] = []
    start = 0
    for month, length in enumerate(_LEAP_LENGTHS if leap else _LENGTHS, start=1):
        if month in schedule.months:
            days = _month_days(schedule, length, (first_weekday + start) % 7)
            matches += [start + day - 1 for day in days]
        start += length
    if not matches:
        return None
    inner = max((later - earlier for earlier, later in itertools.pairwise(matches)), default=0)
    return matches[0], matches[-1], inner


@lru_cache(maxsize=256)
def _month_days(schedule: Schedule, length: int, first_weekday: int) -> list[int]:
    """The matching days (1-based) of a month of ``length`` days whose 1st is ``first_weekday``."""
    in_month = {day for day in schedule.days_of_month if day <= length}
    in_week = {day for day in range(1, length + 1) if (first_weekday + day - 1) % 7 in schedule.days_of_week}
    either = not (schedule.day_of_month_star or schedule.day_of_week_star)
    return sorted(in_month | in_week if either else in_month & in_week)
