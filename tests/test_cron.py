"""Backup schedules: their longest gap computed instead of sampled (config/cron.py).

The oracle is croniter (what render/backup.py sampled before): its runs from a fixed instant.
Schedules are the ones config/grammar.py accepts (its own tests cover what it refuses).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from croniter import croniter

from config import cron, grammar

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
    "10 1 1-7 * 0",
]


@pytest.mark.parametrize("schedule", TYPICAL)
def test_the_longest_gap_is_the_one_sampling_the_runs_finds(schedule: str) -> None:
    assert cron.longest_gap_seconds(schedule) == sampled_longest_gap(schedule)


Field = tuple[str, int, int, "dict[str, int] | None"]


def random_field(rng: random.Random, field: Field) -> str:
    """A field the grammar accepts that croniter reads alike. Not a list of every value without a
    star, which croniter 7.0.0 reads otherwise (see the tests below)."""
    _, low, high, names = field
    spelled = list(names or {})
    if rng.random() < 0.3:
        return "*"
    while True:
        parts = []
        for _ in range(rng.randint(1, 3)):
            start = rng.randint(low, high)
            shape = rng.random()
            if shape < 0.4:
                parts.append(spelled[start - low] if spelled and rng.random() < 0.3 else str(start))
            elif shape < 0.7:
                first = min(start, high - 1)
                parts.append(f"{first}-{rng.randint(first + 1, high)}")
            elif shape < 0.85:
                first = min(start, high - 1)
                parts.append(f"{first}-{rng.randint(first + 1, high)}/{rng.randint(2, 9)}")
            else:
                parts.append(f"*/{rng.randint(2, min(9, high))}")
                break  # a star step stands alone
        text = parts[-1] if parts[-1].startswith("*") else ",".join(parts)
        parsed = grammar._cron_field(text, low, high, names)
        assert not isinstance(parsed, str), (text, parsed)
        if len(parsed[0]) < high - low + 1:
            return text


def random_days(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(random_field(rng, field) for field in grammar._FIELDS[2:])


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
    schedule = grammar.parse_cron(f"0 0 {day_fields}")
    assert not isinstance(schedule, str), schedule
    start, end = date(2027, 1, 1), date(2029, 1, 1)
    mine = [day for offset in range((end - start).days) if schedule.runs_on(day := start + timedelta(days=offset))]
    assert mine == croniter_days(day_fields, start, end), day_fields


def test_a_schedule_dense_on_some_days_allows_for_the_days_between() -> None:
    # Every minute on Mondays: 1000 sampled runs never leave the first Monday (60 s); the backup
    # really is not run for six days.
    assert sampled_longest_gap("* * * * 1") == 60
    assert cron.longest_gap_seconds("* * * * 1") == 6 * 86400 + 60


def test_february_29th_skips_the_century_years_that_are_not_leap_years() -> None:
    # 2096-02-29, then 2104-02-29: 2100 is not a leap year.
    assert cron.longest_gap_seconds("0 0 29 2 *") == (date(2104, 2, 29) - date(2096, 2, 29)).days * 86400


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


def test_a_schedule_the_loader_refuses_is_refused_with_its_reason() -> None:
    with pytest.raises(ValueError, match="the day of week field"):
        cron.longest_gap_seconds("0 3 * * 7")
    with pytest.raises(ValueError, match="no day matches"):
        cron.longest_gap_seconds("0 0 30 2 *")
