"""A PostgreSQL store's ``logins`` through the program (spoon's stack, under the mock runtime): the
apps' URL names the first login with its password, the roles step receives the password of every
login that may log in and none other, and a generated password exists only while its login may log in."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from config import parse
from config.errors import ConfigError
from config.loader import merge
from stores.postgres.server import APP_ATTRIBUTES, roles_sql, scram_verifier
from tests.examples.example_helpers import config_file, config_values, secret_text
from tests.helpers import parsed, run_with
from tests.test_idempotency import described
from tools import mockrun, readback

STACK = "spoon"
PASSWORD = "random:index/randomPassword:RandomPassword"


def spoon_config(db: dict[str, Any]) -> Any:
    """spoon's validated config with ``db`` merged into its store db."""
    values = {key.split(":", 1)[1]: value for key, value in config_values(STACK).items() if key.startswith("keel:")}
    values["services"] = merge(values["services"], {"db": db})
    return parse({key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()})


def run_with_logins(*logins: str) -> mockrun.Run:
    services: dict[str, Any] = copy.deepcopy(config_values(STACK)["keel:services"])
    services["db"]["logins"] = list(logins)
    result = mockrun.run(STACK, config_file=config_file(STACK), overrides={"keel:services": services})
    assert result.error is None, result.error
    return result


def generated(run: mockrun.Run) -> dict[str, str]:
    return {p.name: p.outputs["result"] for p in run.of_type(PASSWORD) if p.name.startswith("db-password")}


def app_url(run: mockrun.Run) -> tuple[str | None, str | None]:
    url = urlsplit(secret_text(run.one("docker:index/secret:Secret", "nextjs-database_url")))
    return url.username, url.password


def roles_stdin(run: mockrun.Run) -> str:
    return str(next(r for r in run.resources if r.name == "db-roles").inputs["stdin"])


@pytest.mark.parametrize(
    ("logins", "app_user", "passwords"),
    [
        (("owner",), "spoon_admin", {"db-password"}),
        (("a",), "spoon_admin_a", {"db-password-a"}),
        (("a", "b"), "spoon_admin_a", {"db-password-a", "db-password-b"}),
        (("b", "a"), "spoon_admin_b", {"db-password-a", "db-password-b"}),
        (("b",), "spoon_admin_b", {"db-password-b"}),
        (("a", "owner"), "spoon_admin_a", {"db-password-a", "db-password"}),
    ],
)
def test_the_apps_log_in_as_the_first_login_and_the_roles_step_knows_every_login(logins, app_user, passwords):
    run = run_with_logins(*logins)
    values = generated(run)
    assert set(values) == passwords
    user, password = app_url(run)
    first = "db-password" if logins[0] == "owner" else f"db-password-{logins[0]}"
    assert (user, password) == (app_user, values[first])
    stdin = roles_stdin(run)
    spec = spoon_config({"logins": list(logins)}).services["db"]
    by_role = {spec.login_role(login): values["db-password" if login == "owner" else f"db-password-{login}"]
               for login in logins}  # fmt: skip
    # Each login that may log in is given its password (as a SCRAM verifier) by the step.
    for role, value in by_role.items():
        assert f"ALTER ROLE \"{role}\" WITH {APP_ATTRIBUTES} LOGIN PASSWORD '{scram_verifier(role, value)}';" in stdin
    # The step's SQL is exactly the one rendered from these passwords (the clients' included).
    client_passwords = {
        role: p.outputs["result"]
        for role, name in (("keel_exporter", "db-exporter-password"), ("keel_backup", "db-backup-password"))
        for p in run.of_type(PASSWORD)
        if p.name == name
    }
    assert stdin == roles_sql(spec, {**by_role, **client_passwords})


def test_a_password_alone_is_refused_while_the_apps_log_in_as_a_or_b():
    with pytest.raises(ConfigError) as error:
        parsed("prod", {"keel:services": {"db": {"logins": ["b", "a"]}}})
    assert str(error.value).startswith('services/api/secrets/DATABASE_PASSWORD: "store:db" is a password alone')
    assert "shop_b" in str(error.value) and "expected store-url:db" in str(error.value)
    # The adoption's first step keeps the owner first: the password alone still logs in.
    parsed("prod", {"keel:services": {"db": {"logins": ["owner", "a"]}}})


@pytest.mark.parametrize(
    ("db", "message"),
    [
        ({"logins": ["a", "a"]}, "services/db/logins: found"),
        ({"logins": []}, "services/db/logins"),
        ({"logins": ["a", "b", "owner"]}, "services/db/logins"),
        ({"logins": ["c"]}, "services/db/logins/0"),
        ({"logins": ["b"], "password_secret": "db_password"}, "services/db/password_secret: found"),
        ({"logins": ["b"], "user": "u" * 62}, "services/db/user: found"),
    ],
)
def test_bad_logins_name_their_key(db, message):
    with pytest.raises(ConfigError) as error:
        spoon_config(db)
    assert str(error.value).startswith(message), str(error.value)


def test_the_owners_configured_password_must_be_set_while_it_logs_in_second():
    """The first step of moving from the owner to a: the owner still logs in, with its own secret."""
    services: dict[str, Any] = copy.deepcopy(config_values(STACK)["keel:services"])
    services["db"].update(logins=["a", "owner"], password_secret="db_owner_password")
    run = mockrun.run(STACK, config_file=config_file(STACK), fill_secrets=False, overrides={"keel:services": services})
    assert run.error is not None and run.resources == []
    assert 'services/db/password_secret: names the secret "db_owner_password", which is not set' in str(run.error)


def test_the_second_preview_after_an_up_during_a_rotation_is_empty():
    services: dict[str, Any] = copy.deepcopy(config_values(STACK)["keel:services"])
    services["db"]["logins"] = ["b", "a"]
    first = run_with_logins("b", "a")
    state = readback.state_after_up(first.resources)
    second = mockrun.run(STACK, config_file=config_file(STACK), overrides={"keel:services": services}, prior=state)
    assert second.error is None, second.error
    plan = readback.plan(state, second.resources)
    assert plan.empty, described(plan, second)


def test_the_roles_step_runs_again_for_a_new_data_volume():
    """A store restored into its next volume generation starts on a data directory without the
    roles: the step's triggers name the volume, so a new volume replaces (re-runs) it."""
    before = mockrun.run("prod")
    after = run_with("prod", {"keel:services": {"db": {"volume_generation": 1}}})
    assert before.error is None and after.error is None, (before.error, after.error)

    def step_and_volume(run: mockrun.Run) -> tuple[list[str], str]:
        step = next(r for r in run.resources if r.name == "db-roles")
        volume = next(
            r
            for r in run.resources
            if r.type == "docker:index/volume:Volume" and r.inputs.get("name") == step_volume_name(run)
        )
        return step.inputs["triggers"], volume.id

    for run in (before, after):
        triggers, volume_id = step_and_volume(run)
        assert triggers == [volume_id]
    assert step_and_volume(before)[1] != step_and_volume(after)[1]


def step_volume_name(run: mockrun.Run) -> str:
    service = next(r for r in run.resources if r.name == "db-service")
    mounts = service.inputs["taskSpec"]["containerSpec"]["mounts"]
    return next(m["source"] for m in mounts if m["type"] == "volume")
