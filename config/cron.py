"""The longest gap between two runs of a backup schedule, computed instead of sampled.

The schedule is read by config/grammar.py (parse_cron: the part of swarm-cronjob's robfig/cron
v3.0.1 syntax that keel accepts, validated at load), days matching as robfig's spec.go dayMatches
decides (grammar.Cron.runs_on). The gap is exact: the times of day are the product of the minute
and hour fields, and the days repeat with the Gregorian calendar's 400-year cycle (146,097 days,
a whole number of weeks), so the longest gap between two runs is found by walking the cycle's
years once, each kind of year (weekday of January 1st, leap or not: 14 kinds) and each kind of
month computed once. Sampling 1,000 runs, as before, costs ~75 ms per schedule and misses gaps
wider than the sample (every minute on Mondays: 60 s sampled, 6 days and a minute in fact).
"""

from __future__ import annotations

import calendar
import itertools
from functools import lru_cache

from config import grammar

CYCLE_YEARS = 400
CYCLE_START = 2000  # any start works: the cycle repeats whole weeks
DAY_S = 86400


def longest_gap_seconds(expression: str) -> int:
    """The longest time between two consecutive runs of ``expression`` (UTC), in seconds.

    The longest, not the first, so that an irregular schedule (weekdays only) allows for its
    weekend. ValueError for a schedule the loader refuses (config/models.py BackupConfig).
    """
    schedule = grammar.parse_cron(expression)
    if isinstance(schedule, str):
        raise ValueError(schedule)
    return _longest_gap(schedule)


@lru_cache(maxsize=64)
def _longest_gap(schedule: grammar.Cron) -> int:
    times = sorted(hour * 3600 + minute * 60 for hour in schedule.hours for minute in schedule.minutes)
    within_day = max((later - earlier for earlier, later in itertools.pairwise(times)), default=0)
    days = _longest_day_gap(schedule)
    # From a day's last run to the next matching day's first.
    return max(within_day, days * DAY_S - (times[-1] - times[0]))


def _longest_day_gap(schedule: grammar.Cron) -> int:
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
        raise ValueError("no day matches: the days of month named never fall in the months named")
    return max(longest, first_match + ordinal - previous)  # across the cycle's end


_LENGTHS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_LEAP_LENGTHS = (31, 29, *_LENGTHS[2:])


@lru_cache(maxsize=256)
def _year_matches(schedule: grammar.Cron, first_weekday: int, leap: bool) -> tuple[int, int, int] | None:
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
def _month_days(schedule: grammar.Cron, length: int, first_weekday: int) -> list[int]:
    """The matching days (1-based) of a month of ``length`` days whose 1st is ``first_weekday``."""
    in_month = {day for day in schedule.days if day <= length}
    in_week = {day for day in range(1, length + 1) if (first_weekday + day - 1) % 7 in schedule.weekdays}
    either = not (schedule.any_day or schedule.any_weekday)
    return sorted(in_month | in_week if either else in_month & in_week)
