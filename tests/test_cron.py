"""Backup schedules: what the scheduler accepts, and their longest gap computed instead of sampled.

The oracle is croniter (what render/backup.py sampled before): its runs from a fixed instant.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from croniter import croniter

from config import cron

REFERENCE = datetime(2025, 1, 1, tzinfo=UTC)


def sampled_longest_gap(schedule: str, samples: int = 1000) -> int:
    """The previous implementation: the longest gap among 1000 runs from 2025-01-01."""
    runs = croniter(schedule, REFERENCE)
    previous = runs.get_next(datetime)
    longest = 0
    for _ in range(samples):
        current = runs.get_next(datetime)
        longest = max(longest, int((current - previous).total_seconds()))
        previous = current
    return longest


# Schedules whose 1000 sampled runs span every kind of gap they have (a week of an hourly
# weekday schedule, years of a monthly one), so sampling found the longest gap too.
TYPICAL = [
    "0 * * * *",
    "15 */2 * * *",
    "*/5 * * * *",
    "30 3 * * *",
    "0 3,15 * * *",
    "0 9-17 * * mon-fri",
    "30 4 * * 0",
    "0 2 * * 1-5",
    "45 3 * * 6",
    "0 0 1 * *",
    "0 0 31 * *",
    "0 0 1 jan,jul *",
    "0 0 29 2 *",
    "0 3 1,15 * 1",
    "0 3 */2 * 1",
    "0 3 ? * 1",
    "10 1 1-7 * 0",
]


@pytest.mark.parametrize("schedule", TYPICAL)
def test_the_longest_gap_is_the_one_sampling_the_runs_finds(schedule: str) -> None:
    assert cron.longest_gap_seconds(schedule) == sampled_longest_gap(schedule)


def random_field(rng: random.Random, bounds: cron._Bounds) -> str:
    """A field in the grammar both the scheduler and croniter read alike. Not: "*/1", a range of one
    value ("3-3"), or a list of every value without a star, which croniter 7.0.0 reads otherwise
    (see the tests below)."""
    low, high, names = bounds.low, bounds.high, list(bounds.names or {})
    if rng.random() < 0.3:
        return "*"
    while True:
        parts = []
        for _ in range(rng.randint(1, 3)):
            start = rng.randint(low, high)
            shape = rng.random()
            if shape < 0.4:
                parts.append(names[start - low] if names and rng.random() < 0.3 else str(start))
            elif shape < 0.7:
                first = min(start, high - 1)
                parts.append(f"{first}-{rng.randint(first + 1, high)}")
            elif shape < 0.85:
                parts.append(f"{start}/{rng.randint(2, 9)}")
            else:
                parts.append(f"*/{rng.randint(2, 9)}")
        field = ",".join(parts)
        if len(cron._field(field, bounds)[0]) < high - low + 1:
            return field


def random_days(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(random_field(rng, bounds) for bounds in cron.FIELDS[2:])


def croniter_days(day_fields: str, start: date, end: date) -> list[date]:
    just_before = datetime(start.year, start.month, start.day, tzinfo=UTC) - timedelta(seconds=1)
    runs = croniter(f"0 0 {day_fields}", just_before)
    found = []
    while (day := runs.get_next(datetime).date()) < end:
        found.append(day)
    return found


@pytest.mark.parametrize("seed", range(40))
def test_the_days_that_match_are_the_ones_croniter_finds(seed: int) -> None:
    """Random day fields, every day of 2027-2028 (a leap year) against croniter's runs."""
    day_fields = random_days(seed)
    schedule = cron.parse(f"0 0 {day_fields}")
    start, end = date(2027, 1, 1), date(2029, 1, 1)
    mine = [
        start + timedelta(days=offset)
        for offset in range((end - start).days)
        if (day := start + timedelta(days=offset)).month in schedule.months
        and schedule.day_matches(day.day, day.isoweekday() % 7)
    ]
    assert mine == croniter_days(day_fields, start, end), day_fields


def test_a_schedule_dense_on_some_days_allows_for_the_days_between() -> None:
    # Every minute on Mondays: 1000 sampled runs never leave the first Monday (60 s); the backup
    # really is not run for six days.
    assert sampled_longest_gap("* * * * 1") == 60
    assert cron.longest_gap_seconds("* * * * 1") == 6 * 86400 + 60


def test_february_29th_skips_the_century_years_that_are_not_leap_years() -> None:
    # 2096-02-29, then 2104-02-29: 2100 is not a leap year.
    assert cron.longest_gap_seconds("0 0 29 2 *") == (date(2104, 2, 29) - date(2096, 2, 29)).days * 86400


def test_a_star_step_of_one_is_a_star_as_the_scheduler_reads_it() -> None:
    # robfig/cron v3.0.1 parser.go getRange keeps the star bit for "*/1", and spec.go dayMatches
    # then requires both day fields: Mondays only. croniter reads "*/1" as every day, OR Mondays.
    assert cron.longest_gap_seconds("0 3 */1 * 1") == 7 * 86400
    assert cron.longest_gap_seconds("0 3 */2 * 1") == 2 * 86400  # a step above 1 drops the star: either field


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("every hour", "2 fields; the scheduler reads minute, hour, day of month, month, day of week"),
        ("0 3 * * 7", 'day of week "7": 7 is above 6'),
        ("0 3 * * 5-1", 'day of week "5-1": the range starts after it ends'),
        ("0 0 L * *", 'day of month "L": "L" is not a number'),
        ("0 0 * * 5#2", 'day of week "5#2": "5#2" is not a number or a name'),
        ("0 0 0 * *", 'day of month "0": 0 is below 1'),
        ("0 */0 * * *", 'hour "*/0": a step must be a positive number'),
        ("0 3 * foo *", 'month "foo": "foo" is not a number or a name'),
        ("0 0 30 2 *", "no day matches: the days of month named never fall in the months named"),
    ],
)
def test_refuses_what_the_scheduler_cannot_parse_or_never_runs(schedule: str, reason: str) -> None:
    with pytest.raises(cron.CronError) as caught:
        cron.longest_gap_seconds(schedule)
    assert str(caught.value) == reason


def test_a_range_of_one_value_is_that_value() -> None:
    # parser.go getRange: "3-3" is 3 to 3, Wednesdays; croniter 7.0.0 expands it to "*", every day.
    assert cron.longest_gap_seconds("0 3 * * 3-3") == 7 * 86400
    assert sampled_longest_gap("0 3 * * 3-3") == 86400


def test_a_day_of_week_range_of_every_day_without_a_star_matches_every_day() -> None:
    # "*/2" has no star bit (a step above 1 clears it) and neither has "0-6", so spec.go
    # dayMatches takes either field: every day. croniter 7.0.0 reads a day-of-week field naming all
    # seven days as "*" when the day-of-month text holds a "*", and keeps only the odd days.
    assert cron.longest_gap_seconds("0 3 */2 * 0-6") == 86400
    assert sampled_longest_gap("0 3 */2 * 0-6") == 2 * 86400


def test_names_and_question_marks_read_as_the_scheduler_reads_them() -> None:
    assert cron.parse("0 3 ? JAN,Jul sun-tue") == cron.parse("0 3 * 1,7 0-2")
