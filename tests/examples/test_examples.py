"""What holds for every example: it is self-contained, renders offline, passes the policy pack,
fits its server, its nginx.conf is accepted by a real nginx, and the examples table is true."""

from __future__ import annotations

import dataclasses
import http.client
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import capacity
from policy.rules import MANDATORY, evaluate
from render.nginx import ORIGIN_PULL_CA_FILE, ORIGIN_PULL_CA_PATH, NginxUpstream, render_nginx_conf, site_from_config
from tests.examples.example_helpers import (
    EXAMPLES,
    EXAMPLES_DIR,
    config_file,
    config_values,
    example_run,
    nginx_conf,
    stack_config,
)
from tests.helpers import check_render_is_readable
from tests.policy.test_policy_stacks import as_policy_resources, describe
from tests.realtools.nginx_harness import (
    LOOPBACK,
    NginxProcess,
    free_port,
    make_pki,
    upstream_servers,
    wheel_nginx,
    work_dir,
)
from tests.tool_requirements import require_root
from tools import render


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_is_a_single_self_contained_prod_stack_file(name):
    values = config_values(name)
    assert "keel:base" not in values
    assert all(key.startswith("keel:") for key in values), sorted(values)
    assert values["keel:environment"] == "prod"
    assert values["keel:host"]["provider"] == "hcloud"
    # Secrets are set with `pulumi config set --secret`, never written into the example.
    sections = {"keel:environment", "keel:name_prefix", "keel:host", "keel:dns", "keel:proxy", "keel:services",
                "keel:observability", "keel:backup", "keel:jobs", "keel:secret_rules"}  # fmt: skip
    assert set(values) <= sections, sorted(set(values) - sections)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_renders_offline_as_readable_files(name, tmp_path):
    run = example_run(name)
    render.write(run, tmp_path)
    check_render_is_readable(run, tmp_path)
    assert (tmp_path / "files" / "host" / "cloud-init.yaml").read_text().startswith("#cloud-config")
    assert [p.name for p in (tmp_path / "files").glob("*/etc/nginx/keel/staged/nginx.conf")] == ["nginx.conf"]
    assert (tmp_path / "outputs.json").stat().st_size > 0


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_passes_every_mandatory_policy(name):
    run = example_run(name)
    env = {"environment": "prod"}
    violations = evaluate(
        as_policy_resources(run.resources), config={"image-pinned": env, "prod-server-delete-protection": env}
    )
    mandatory = [v for v in violations if v.level == MANDATORY]
    assert mandatory == [], describe(mandatory)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_fits_its_server_and_exports_that_budget(name):
    cfg = stack_config(name)
    budget = capacity.budget(cfg)
    assert budget.total_mb <= budget.allowed_mb
    assert example_run(name).outputs["memory_budget"] == budget.as_output()


@pytest.mark.parametrize("name", EXAMPLES)
def test_real_nginx_accepts_the_examples_exact_nginx_conf(name):
    """`nginx -t` (nginx 1.31, which parses what the 1.28 image does) on the text the proxy gets;
    only what exists inside the container alone is swapped: the worker user, the certificate
    paths, and the log exporter's name (nginx resolves a syslog server when it loads)."""
    require_root("nginx -t binds the production ports (80, 443) and creates /var/run/nginx.pid")
    text = nginx_conf(example_run(name))
    with work_dir(f"keel-example-{name}-") as directory:
        pki = make_pki(directory, ["example.test"])
        text = text.replace("\nuser nginx;\n", "\n")
        text = re.sub(r"/(run/secrets|etc/nginx/certs)/tls\.crt", str(pki.certificate), text)
        text = re.sub(r"/(run/secrets|etc/nginx/certs)/tls\.key", str(pki.key), text)
        text = re.sub(r"syslog:server=[a-z0-9-]+:", f"syslog:server={LOOPBACK}:", text)
        text = text.replace(ORIGIN_PULL_CA_PATH, str(ORIGIN_PULL_CA_FILE))
        result = NginxProcess(wheel_nginx(), directory, text, []).test_config()
    assert result.returncode == 0, result.stderr
    assert "[emerg]" not in result.stderr and "[warn]" not in result.stderr, result.stderr


# ---------------------------------------------------------------- almeyo's route table, live


@pytest.fixture(scope="module")
def almeyo_proxy() -> Iterator[tuple[int, dict[str, int]]]:
    """almeyo's site on a real nginx, its two upstreams played by local servers."""
    cfg = stack_config("almeyo")
    with work_dir("keel-example-almeyo-live-") as directory, upstream_servers("frontend", "backend") as servers:
        pki = make_pki(directory, ["almeyo.example"])
        site = site_from_config(cfg.proxy, cfg.apps(), server_names=cfg.dns.all_hostnames if cfg.dns else ())
        upstreams = tuple(
            NginxUpstream(u.name, (f"{LOOPBACK}:{servers[u.name].port}",), resolve=False) for u in site.upstreams
        )
        site = dataclasses.replace(
            site,
            upstreams=upstreams,
            certificate_path=str(pki.certificate),
            certificate_key_path=str(pki.key),
            listen_addresses=(LOOPBACK,),
            http_port=(http_port := free_port()),
            https_port=(https_port := free_port()),
            public_https_port=https_port,
            status_port=free_port(),
            access_log=str(directory / "access.log"),
            error_log=str(directory / "error.log"),
            pid_path=str(directory / "nginx.pid"),
            worker_user=None,
            worker_processes="1",
            acme_webroot=str(directory / "acme"),
            include_glob=str(directory / "none" / "*.conf"),
        )
        with NginxProcess(wheel_nginx(), directory, render_nginx_conf(site), [http_port, https_port]):
            yield https_port, {name: server.hits for name, server in servers.items()}  # type: ignore[misc]


def _get(port: int, path: str) -> http.client.HTTPResponse:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # The site's name as SNI: the proxy refuses a handshake for any other name, or none.
    connection = http.client.HTTPSConnection("almeyo.example", port, context=context, timeout=10)
    connection.sock = context.wrap_socket(
        socket.create_connection((LOOPBACK, port), timeout=10), server_hostname="almeyo.example"
    )
    connection.request("GET", path, headers={"Host": "almeyo.example"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@pytest.mark.parametrize(
    ("path", "upstream", "cache_control"),
    [
        ("/", "frontend", "public, max-age=3600"),
        ("/menu.html", "frontend", "public, max-age=3600"),
        ("/css/site.css", "frontend", "public, max-age=2592000"),
        ("/js/app.js", "frontend", "public, max-age=2592000"),
        ("/api/menu", "backend", "no-store"),
        ("/public/images/dish.jpg", "backend", "public, max-age=604800"),
    ],
)
def test_almeyo_routes_and_cache_lifetimes_hold_in_a_real_nginx(almeyo_proxy, path, upstream, cache_control):
    port, hits = almeyo_proxy
    before = hits[upstream][path]
    response = _get(port, path)
    assert response.status == 200
    assert response.getheader("X-Upstream") == upstream
    assert response.getheader("Cache-Control") == cache_control
    assert hits[upstream][path] == before + 1


# ---------------------------------------------------------------- the examples table


def _table_rows() -> dict[str, list[str]]:
    rows = {}
    for line in (EXAMPLES_DIR / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells and cells[0].strip("`[]").split("]")[0] in EXAMPLES:
            rows[cells[0].strip("`[]").split("]")[0]] = cells
    return rows


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_table_states_each_examples_server_cost_and_budget(name):
    cells = _table_rows()[name]
    outputs = example_run(name).outputs
    cfg = stack_config(name)
    assert f"`{cfg.host.server_type}`" in cells[2]  # type: ignore[union-attr]
    assert cells[3] == f"€{outputs['estimated_monthly_cost_eur']:.2f}"
    budget = outputs["memory_budget"]
    assert cells[4] == f"{budget['total_mb']} / {budget['host_memory_mb']} MiB ({budget['used_percent']}%)"


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_readme_maps_the_seed_and_says_what_differs(name):
    text = (EXAMPLES_DIR / name / "README.md").read_text()
    assert f"Pulumi.{name}.yaml" in text
    assert "| seed" in text.lower()
    assert "## Done differently" in text


def test_every_example_folder_is_in_the_table():
    folders = {path.name for path in EXAMPLES_DIR.iterdir() if path.is_dir()}
    assert folders == set(EXAMPLES) == set(_table_rows())


def test_example_paths_are_where_the_issue_puts_them():
    for name in EXAMPLES:
        assert config_file(name) == Path(EXAMPLES_DIR, name, f"Pulumi.{name}.yaml") and config_file(name).is_file()
