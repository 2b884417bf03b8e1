"""What each change a user makes does to a deployed stack, pinned row by row.

The rows are tools/impact.CHANGES; the README's change-impact table is tools/impact's output
(`python -m tools.impact`), and a test keeps the two identical. The house rule each row checks:
nothing stateful and not the proxy is replaced or restarted unless the change is to it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import impact

ROOT = Path(__file__).resolve().parent.parent
STATEFUL = {"db-service", "cache-service", "observability-prometheus", "observability-grafana"}
NODE = "node-workers-1"
NODE_RESOURCES = {f"{NODE}-{part}" for part in ("host-key", "server", "network", "ready", "join", "membership")}
# change title -> (created, deleted): only these rows create or delete anything
CREATED_DELETED: dict[str, tuple[set[str], set[str]]] = {
    "a worker node added": (NODE_RESOURCES, set()),
    "a worker node removed": (set(), NODE_RESOURCES),
    # A rotation's login password exists only while the login may log in.
    "a database password's rotation, step 1: logins [a] to [a, b]": ({"db-password-b"}, set()),
    "step 3: logins [b, a] to [b]": (set(), {"db-password-a"}),
}

# change title -> (updated in place, replaced, services restarted)
EXPECTED: dict[str, tuple[set[str], set[str], set[str]]] = {
    "an app's image tag": ({"api-migration", "api-service"}, set(), {"api-service"}),
    "an app's env value": ({"api-migration", "api-service"}, set(), {"api-service"}),
    "an app's secret value": ({"api-migration", "api-service"}, {"api-jwt_secret"}, {"api-service"}),
    "an app's replicas": ({"web-service"}, set(), set()),
    "a route": ({"proxy-nginx.conf"}, set(), set()),
    "an nginx setting": ({"proxy-nginx.conf"}, set(), set()),
    "a store's memory": ({"db-service"}, {"db-postgresql.conf"}, {"db-service"}),
    "the server type": ({"host-server"}, set(), set()),
    "a registry token": (set(), set(), set()),
    "a new hostname": (
        {"proxy-nginx.conf", "proxy-service", "observability-blackbox-exporter", "observability-prometheus"},
        {
            "proxy-csr",
            "proxy-origin-cert",
            "proxy-tls.crt",
            "observability-blackbox-config",
            "observability-prometheus-config",
        },
        {"proxy-service", "observability-blackbox-exporter", "observability-prometheus"},
    ),
    # Spread over one node more (or less), the app allows fewer (more) tasks per node: a rolling update.
    "a worker node added": ({"nextjs-service"}, set(), {"nextjs-service"}),
    "a worker node removed": ({"nextjs-service"}, set(), {"nextjs-service"}),
    # A job's update always follows its wait step (render/jobs.py idle_script).
    "a job's schedule": ({"job-prune-logs-idle", "job-prune-logs-service"}, set(), set()),
    "a release of an app, its worker and its job": (
        {"backend-service", "mailer-service", "job-prune-logs-idle", "job-prune-logs-service"},
        set(),
        {"backend-service", "mailer-service", "job-prune-logs-service"},
    ),
    # A database password rotated without a gap (spoon's db, stores/postgres/model.py logins).
    "a database password's rotation, step 1: logins [a] to [a, b]": ({"db-roles"}, set(), set()),
    "step 2: logins [a, b] to [b, a]": ({"nextjs-service"}, {"db-password", "nextjs-database_url"}, {"nextjs-service"}),
    "step 3: logins [b, a] to [b]": ({"db-roles"}, set(), set()),
}


FIRST_POOLS = "node pools declared (the first time)"


@pytest.fixture(scope="module")
def impacts() -> dict[str, impact.Impact]:
    return {found.change.title: found for found in impact.impacts()}


def test_declaring_pools_replaces_networks_and_services_but_no_volume_or_server(impacts):
    """The one sweeping change: encryption replaces every overlay network, and each service attached to
    one is replaced with it (README says: a maintenance window). Nothing that holds data is replaced."""
    found = impacts[FIRST_POOLS]
    replaced = found.names("replace")
    assert {"networks-edge", "networks-data", "networks-monitoring"} <= replaced
    assert {"db-service", "cache-service", "proxy-service", "api-service", "web-service"} <= replaced
    assert not found.plan.deletes
    touched = replaced | found.names("update")
    assert not {"host-server", "host-data", "host-ipv4", "host-ipv6"} & touched
    assert {"cluster-network", "cluster-primary-membership", "node-workers-1-membership"} <= found.names("create")
    types = {r.name: r.type for r in impact._run(found.change, True, None).resources}
    assert not [name for name in touched if types.get(name) == "docker:index/volume:Volume"]


@pytest.mark.parametrize("title", list(EXPECTED))
def test_each_change_updates_replaces_and_restarts_exactly_what_the_table_says(impacts, title):
    found = impacts[title]
    updated, replaced, restarted = EXPECTED[title]
    assert found.names("update") == updated, found.plan.describe()
    assert found.names("replace") == replaced, found.plan.describe()
    assert set(found.restarted) == restarted
    created, deleted = CREATED_DELETED.get(title, (set(), set()))
    assert found.names("create") == created or title == "a new hostname", found.plan.describe()
    assert not found.plan.creates or title in ("a new hostname", *CREATED_DELETED), found.plan.describe()
    assert found.names("delete") == deleted, found.plan.describe()


def test_a_rotation_step_touches_only_a_password_the_roles_step_and_the_apps_secret(impacts):
    steps = [title for title in EXPECTED if "logins [" in title]
    assert len(steps) == 3
    for title in steps:
        touched = {name for _, name in impacts[title].order}
        assert touched <= {"db-password", "db-password-a", "db-password-b", "db-roles", "nextjs-database_url",
                           "nextjs-service"}, touched  # fmt: skip
        assert "db-service" not in touched and not {"db-data", "cache-service"} & touched
    # The roles step lets b log in before the apps are given b (step 1 before step 2), and the apps
    # no longer hold a when it refuses a (step 3).
    assert ("update", "db-roles") not in impacts["step 2: logins [a, b] to [b, a]"].order


def test_a_removed_node_is_drained_before_its_server_is_destroyed(impacts):
    """The membership's delete drains the node and removes it from the swarm (render/cluster.py
    removal_script); the engine deletes a resource before what it depends on, so the server goes last
    but its key. The app first allows more tasks per node again, so the drained tasks find room."""
    order = impacts["a worker node removed"].order
    deleted = [name for kind, name in order if kind == "delete"]
    assert deleted.index(f"{NODE}-membership") < deleted.index(f"{NODE}-join") < deleted.index(f"{NODE}-server")
    assert order.index(("update", "nextjs-service")) < order.index(("delete", f"{NODE}-membership"))


def test_an_added_node_joins_before_it_is_labelled(impacts):
    order = [name for kind, name in impacts["a worker node added"].order if kind == "create"]
    assert order.index(f"{NODE}-server") < order.index(f"{NODE}-ready") < order.index(f"{NODE}-join")
    assert order.index(f"{NODE}-join") < order.index(f"{NODE}-membership")


@pytest.mark.parametrize("title", list(EXPECTED))
def test_nothing_stateful_restarts_unless_the_change_is_to_it(impacts, title):
    restarted = set(impacts[title].restarted)
    if title == "a store's memory":
        assert restarted & STATEFUL == {"db-service"}
    elif title == "a new hostname":
        # Prometheus' probe list names the hostnames: its config changes, so it restarts (stop-first).
        assert restarted & STATEFUL == {"observability-prometheus"}
    else:
        assert not restarted & STATEFUL, restarted


def test_a_replaced_object_is_created_before_the_old_one_is_deleted(impacts):
    order = impacts["an app's secret value"].order
    created = order.index(("replace", "api-jwt_secret"))
    assert order.index(("update", "api-service")) > created
    assert order[-1] == ("delete replaced", "api-jwt_secret")


def test_the_migration_runs_before_the_service_rolls(impacts):
    order = impacts["an app's image tag"].order
    assert order.index(("update", "api-migration")) < order.index(("update", "api-service"))


@pytest.mark.parametrize("title", ["a job's schedule", "a release of an app, its worker and its job"])
def test_a_job_changes_after_its_app_and_its_wait_for_a_run_in_progress(impacts, title):
    order = impacts[title].order
    wait = order.index(("update", "job-prune-logs-idle"))
    assert wait < order.index(("update", "job-prune-logs-service"))
    if ("update", "backend-service") in order:
        assert order.index(("update", "backend-service")) < wait


def test_every_change_of_the_catalogue_is_pinned():
    assert {change.title for change in impact.CHANGES} == {*EXPECTED, FIRST_POOLS}


def test_the_readme_table_is_what_the_model_computes(impacts):
    table = impact.markdown([impacts[change.title] for change in impact.CHANGES])
    assert table in (ROOT / "README.md").read_text(), "regenerate it with: python -m tools.impact"
