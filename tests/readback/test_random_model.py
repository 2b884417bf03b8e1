"""The read-back model of terraform-provider-random v3.9.0 (tools/readback/random_.py).

Paths are under internal/ at v3.9.0.
"""

from __future__ import annotations

import string

from tools.readback import random_


def paths(changes) -> dict[str, bool]:
    return {change.path: change.replaces for change in changes}


PASSWORD = {"length": 32.0, "special": False}


def test_password_result_has_the_length_and_only_the_enabled_characters():
    """random/string.go CreateString: upper, lower and numeric default on; special off here."""
    result = random_.PASSWORD.state(PASSWORD, "db-password")["result"]
    assert len(result) == 32
    assert set(result) <= set(string.ascii_letters + string.digits)


def test_password_minimums_are_honoured():
    """CreateString draws min_* characters from their own sets first."""
    result = random_.generate({"length": 12, "special": True, "minSpecial": 5, "minNumeric": 4}, "x")
    assert sum(c in random_.SPECIAL for c in result) >= 5 and sum(c.isdigit() for c in result) >= 4


def test_every_password_argument_replaces_and_the_result_is_kept():
    """resource_password.go passwordSchemaV3: every argument RequiresReplace; result UseStateForUnknown."""
    state = random_.PASSWORD.state(PASSWORD, "db-password")
    assert random_.PASSWORD.diff(state, PASSWORD) == []
    assert paths(random_.PASSWORD.diff(state, {**PASSWORD, "length": 40.0})) == {"length": True}
    assert paths(random_.PASSWORD.diff(state, {**PASSWORD, "special": True})) == {"special": True}
    assert paths(random_.PASSWORD.diff(state, {**PASSWORD, "keepers": {"v": "2"}})) == {"keepers": True}


def test_defaults_match_an_unset_argument():
    """passwordSchemaV3: special/upper/lower/numeric Default true, min_* Default 0."""
    state = random_.PASSWORD.state({"length": 32.0, "upper": True, "minLower": 0.0}, "p")
    assert random_.PASSWORD.diff(state, {"length": 32.0}) == []
