"""Defence in depth: each renderer stops an injection on its own, whatever config/ let through.

Hostile values go straight to the renderers here (dataclasses built by hand, pydantic models made
with ``model_construct``, which skips every validator), as a config/ bug would hand them over.
Each renderer must either refuse them or write them so that the consumer reads them back as the
same text: shell scripts are run with stand-in programs that record the arguments they receive
(the real shell does the parsing), YAML is parsed back, and nginx's guards refuse.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from components import swarm
from components.app_service import volume_owner_script
from config.models import AlertReceiver, ProxyConfig, Route
from config.names import Names
from render import acme, data_volume, migration, nginx, proxy_runtime
from render import backup as bk
from render import observability as obs
from render.cloud_init import CloudInitSpec, render_cloud_init
from stores.mariadb.kind import MariadbTarget
from stores.postgres.kind import PostgresTarget
from stores.volume.kind import VolumeTarget
from tests.helpers import run_with
from tests.test_hostile_config import HOSTILE
from tests.tool_requirements import require_tool

# Printable hostile text (NUL cannot reach a shell argument or a YAML document at all).
PRINTABLE = {name: value for name, value in HOSTILE.items() if name != "NUL"}
CANARY = "keel-canary"


def hostile(label: str, canary: Path) -> str:
    """A value that would create ``canary`` if any shell evaluated it."""
    return f"x'\"$(touch {canary})`touch {canary}`;touch {canary};{label}\n{{}}"


def stand_ins(directory: Path, *names: str) -> dict[str, str]:
    """Programs that record their arguments (one file per call, NUL-separated) and succeed."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text(
            "#!/bin/sh\n"
            'n=$(ls "$RECORD_DIR" | wc -l)\n'
            f'printf "%s\\0" {name} "$@" > "$RECORD_DIR/$n"\n'
            "cat >/dev/null 2>&1 || true\n"
        )
        path.chmod(0o755)
    return {"PATH": f"{directory}:{os.environ['PATH']}"}


def calls(record_dir: Path) -> list[list[str]]:
    files = sorted(record_dir.iterdir(), key=lambda p: int(p.name))
    return [p.read_bytes().decode().split("\0")[:-1] for p in files]


def run_sh(
    script: str, tmp_path: Path, programs: tuple[str, ...], stdin: str = "", expect_status: int = 0
) -> list[list[str]]:
    records = tmp_path / "records"
    records.mkdir(exist_ok=True)
    env = {**os.environ, **stand_ins(tmp_path / "bin", *programs), "RECORD_DIR": str(records), "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        ["sh", "-c", script, "sh"], input=stdin, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == expect_status, result.stderr
    return calls(records)


def shellcheck(script: str, tmp_path: Path) -> None:
    """sh -n and shellcheck, but for the notes shellcheck makes about quotes and $ inside data
    (SC2016, SC2089, SC2090: "will be treated literally"), which is what hostile data must be."""
    path = tmp_path / "script.sh"
    path.write_text(script)
    shellcheck = [require_tool("shellcheck"), "-s", "sh", "-e", "SC2016,SC2089,SC2090", str(path)]
    for command in (["sh", "-n", str(path)], shellcheck):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------- shell


def test_health_probe_hands_a_hostile_path_to_wget_as_one_argument(tmp_path: Path):
    canary = tmp_path / CANARY
    path = "/" + hostile("probe", canary)
    test = swarm.http_probe(8080, path)
    assert test[0] == "CMD-SHELL"
    recorded = run_sh(test[1], tmp_path, ("wget", "curl"))
    assert recorded == [["wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:8080{path}"]]
    assert not canary.exists()


@pytest.mark.parametrize("label", sorted(PRINTABLE))
def test_migration_script_passes_every_hostile_value_as_data(label: str, tmp_path: Path):
    canary = tmp_path / CANARY
    value = PRINTABLE[label] + hostile(label, canary)
    job = migration.MigrationJob(
        name=f"shop-api-migration{value}",
        image=f"ghcr.io/example/api:{value}",
        command=("npm", "run", value),
        networks=(f"net{value}",),
        env={"GREETING": value, f"K{label.replace(' ', '_')}": value},
        secrets=((f"secret{value}", f"/run/secrets/{value}"),),
        volumes=((f"vol{value}", f"/data{value}"),),
        user=value,
        # The stand-in docker reports no task: the script gives up at once and fails the deploy.
        timeout_s=0,
    )
    script = migration.migration_script(job)
    shellcheck(script, tmp_path)
    recorded = run_sh(script, tmp_path, ("docker",), expect_status=1)
    create = next(call for call in recorded if call[1:3] == ["service", "create"])
    assert create[create.index("--name") + 1] == f"shop-api-migration{value}"
    assert create[create.index("--network") + 1] == f"net{value}"
    assert create[create.index("--user") + 1] == value
    assert f"source=secret{value},target=/run/secrets/{value},mode=0444" in create
    assert f"GREETING={value}" in create and f"K{label.replace(' ', '_')}={value}" in create
    assert create[-4:] == [f"ghcr.io/example/api:{value}", "npm", "run", value]
    # The job is removed whatever happened, by its exact name.
    assert recorded[-1] == ["docker", "service", "rm", f"shop-api-migration{value}"]
    assert not canary.exists()


def test_proxy_writer_passes_hostile_names_as_data(tmp_path: Path):
    canary = tmp_path / CANARY
    value = hostile("writer", canary)
    script = proxy_runtime.writer_script(
        volume=f"vol{value}", image=f"nginx{value}", service=f"svc{value}", digest="0" * 64, ack_timeout_s=1
    )
    shellcheck(script, tmp_path)
    # The stand-in docker lists no proxy task, so the writer gives up after its one-second wait.
    recorded = run_sh(script, tmp_path, ("docker",), expect_status=1)
    run = recorded[0]
    assert run[run.index("-v") + 1] == f"vol{value}:/conf"
    assert run[run.index("--entrypoint") + 2] == f"nginx{value}"
    assert recorded[1][-1] == f"label=com.docker.swarm.service.name=svc{value}"
    assert not canary.exists()


def test_volume_owner_script_passes_hostile_names_as_data(tmp_path: Path):
    canary = tmp_path / CANARY
    value = hostile("owner", canary)
    script = volume_owner_script(volume=f"vol{value}", owner="10001:10001", image=f"nginx{value}")
    recorded = run_sh(script, tmp_path, ("docker",))
    run = recorded[0]
    assert run[run.index("-v") + 1] == f"vol{value}:/volume"
    assert run[run.index("--entrypoint") + 2] == f"nginx{value}"
    assert not canary.exists()


def test_data_volume_preparation_passes_a_hostile_directory_as_data(tmp_path: Path):
    canary = tmp_path / CANARY
    directory = str(tmp_path / "volumes" / hostile("directory", canary))
    script = data_volume.prepare_script(directory=directory, owner="10001:10001", image=f"nginx{hostile('i', canary)}")
    shellcheck(script, tmp_path)
    recorded = run_sh(script, tmp_path, ("docker",))
    assert Path(directory).is_dir()
    run = recorded[0]
    assert run[run.index("-v") + 1] == f"{directory}:/volume"
    assert not canary.exists()


def test_acme_script_quotes_its_domains_email_and_zone(tmp_path: Path):
    value = hostile("acme", tmp_path / CANARY)
    script = acme.renewal_script(
        domains=[f"example.com{value}"], email=f"ops{value}", zone_id=f"z{value}", staging=True
    )
    shellcheck(script, tmp_path)
    for text in (f"/CN=example.com{value}", f"example.com{value}", f"ops{value}", f"z{value}"):
        assert shlex.quote(text) in script


def test_backup_defaults_are_assigned_quoted_whatever_the_repository_holds(tmp_path: Path):
    canary = tmp_path / CANARY
    repository = "s3:https://s3.example.com/bucket/" + hostile("repository", canary)
    region = "eu" + hostile("region", canary)
    spec = bk.BackupSpec(
        repository=repository,
        snapshot_host="shop-prod",
        schedule="0 * * * *",
        targets=(VolumeTarget(name="files"),),
        s3_region=region,
    )
    common = bk.render_backup_scripts(spec)["common.sh"]
    probe = common + '\nprintf "%s\\0" "$RESTIC_REPOSITORY" "$AWS_DEFAULT_REGION" "$KEEL_SNAPSHOT_HOST" > "$OUT"\n'
    out = tmp_path / "out"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "AWS_", "KEEL_"))}
    environment.update(OUT=str(out), KEEL_WORK_DIR=str(tmp_path / "work"))
    result = subprocess.run(["sh", "-c", probe], env=environment, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().decode().split("\0")[:-1] == [repository, region, "shop-prod"]
    assert not canary.exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            lambda: {"snapshot_host": "shop$(id)"},
            "snapshot_host 'shop$(id)': expected letters, digits, dots and dashes",
        ),
        (
            lambda: {"targets": (PostgresTarget(name="db", host="db;id", database="app", user="app"),)},
            "store db: host 'db;id': expected letters, digits, dots and dashes",
        ),
        (
            lambda: {"targets": (MariadbTarget(name="db", host="db\nid", database="app", user="app"),)},
            "store db: host 'db\\nid': expected letters, digits, dots and dashes",
        ),
        (
            lambda: {"targets": (VolumeTarget(name="files", sqlite_files=("../x.db",)),)},
            "store files: sqlite file '../x.db': expected a relative path",
        ),
        (
            lambda: {"targets": (VolumeTarget(name="files", sqlite_files=("x.db\n",)),)},
            "store files: sqlite file 'x.db\\n': expected a relative path",
        ),
        (lambda: {"targets": (VolumeTarget(name="files\n"),)}, "store name 'files\\n': expected lower-case letters"),
    ],
    ids=["snapshot host", "store host", "mariadb host", "sqlite file", "sqlite file with a newline",
         "store name with a newline"],
)  # fmt: skip
def test_backup_renderer_refuses_names_it_would_write_unquoted(changes: Callable[[], dict[str, object]], message: str):
    values: dict[str, object] = dict(repository="s3:https://x/b", snapshot_host="shop-prod", schedule="0 * * * *")
    with pytest.raises(ValueError, match=None) as caught:
        values.setdefault("targets", (VolumeTarget(name="files"),))
        values.update(changes())
        bk.BackupSpec(**values)  # type: ignore[arg-type]
    assert message in str(caught.value)


# ----------------------------------------------------------------------------- nginx


@pytest.mark.parametrize(
    "build",
    [
        lambda v: nginx.NginxRoute(path="/" + v, upstream="web"),
        lambda v: nginx.NginxRoute(path="/", upstream="web", host="x" + v),
        lambda v: nginx.NginxRoute(path="/", upstream="web" + v),
        lambda v: nginx.NginxRoute(path="/", upstream="web", max_body="1m" + v),
        lambda v: nginx.NginxUpstream(name="web", servers=("tasks.web:80" + v,)),
        lambda v: nginx.NginxRoute.from_route(Route.model_construct(path="/" + v, service="web")),
        lambda v: nginx.NginxSite(upstreams=(), routes=(), server_names=("example.com" + v,)),
        lambda v: nginx.NginxSite(upstreams=(), routes=(), extra_access_logs=("syslog:server=x" + v,)),
        lambda v: nginx.NginxSite(upstreams=(), routes=(), trusted_cidrs=("10.0.0.0/8" + v,)),
    ],
    ids=[
        "route path", "route host", "upstream name", "body size", "upstream server", "route model bypassed",
        "server name", "access log", "trusted cidr",
    ],
)  # fmt: skip
@pytest.mark.parametrize("label", ["double quote", "newline", "semicolon", "brace", "command substitution"])
def test_nginx_renderer_refuses_what_it_cannot_write(build, label: str):
    with pytest.raises(ValueError):
        build(PRINTABLE[label])


def proxy_with_csp(csp: str) -> ProxyConfig:
    return ProxyConfig.model_construct(**{**ProxyConfig().__dict__, "csp": csp})


@pytest.mark.parametrize("csp", ["'self' \"x", "'self' $x", "'self' \\", "'self'\nadd_header X 1", "'self' caf\u00e9"])
def test_nginx_renderer_refuses_a_policy_it_cannot_write_in_a_double_quoted_string(csp: str):
    with pytest.raises(ValueError, match="csp: double quotes, backslashes, \\$ and control characters"):
        nginx.site_from_config(proxy_with_csp(csp), {})


def test_nginx_writes_a_policy_with_semicolons_and_braces_inside_its_quotes():
    csp = "default-src 'self'; script-src 'sha256-{abc}'"
    site = nginx.NginxSite(
        upstreams=(nginx.NginxUpstream("web", ("tasks.web:80",)),), routes=(nginx.NginxRoute("/", "web"),), csp=csp
    )
    text = nginx.render_nginx_conf(site)
    assert f'add_header Content-Security-Policy "{csp}" always;' in text


# ----------------------------------------------------------------------------- YAML


def spec_with(**changes: object) -> obs.ObservabilitySpec:
    names = Names("shop")
    values: dict[str, object] = dict(
        environment="prod",
        names=names,
        retention_days=30,
        proxy_service_name=names.proxy,
        proxy_https_port=443,
        probes=(obs.TlsProbe("tls_0", "example.com"),),
        apps=(obs.AppTarget("api", names.app("api"), 3000, "/metrics"),),
        stores=(),
        receiver=AlertReceiver(),
        grafana=obs.GrafanaUpstream(names.grafana, 3100, None, "/grafana/", "https://example.com/grafana/"),
    )
    values.update(changes)
    return obs.ObservabilitySpec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("label", sorted(PRINTABLE))
def test_prometheus_yml_reads_back_a_hostile_metrics_path_as_one_value(label: str):
    path = "/metrics" + PRINTABLE[label] + "\n- job_name: injected\n  static_configs: [{targets: [evil:80]}]"
    spec = spec_with(apps=(obs.AppTarget("api", "shop-api", 3000, path),))
    config = yaml.safe_load(obs.render_prometheus_yml(spec))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "injected" not in jobs
    assert jobs["app-api"]["metrics_path"] == path
    assert config == obs.prometheus_config(spec)


@pytest.mark.parametrize("label", sorted(PRINTABLE))
def test_alertmanager_and_blackbox_read_back_hostile_text_as_written(label: str):
    value = PRINTABLE[label] + "\nreceivers: []"
    receiver = AlertReceiver.model_construct(
        kind="email",
        email_to=f"ops{value}",
        email_from=f"alerts{value}",
        smtp_host=f"smtp{value}",
        smtp_username=f"user{value}",
        smtp_password_secret=None,
        webhook_url_secret=None,
    )
    spec = spec_with(receiver=receiver, probes=(obs.TlsProbe("tls_0", f"example.com{value}"),))
    alertmanager = yaml.safe_load(obs.render_alertmanager_yml(spec))
    assert alertmanager == obs.alertmanager_config(spec)
    email = alertmanager["receivers"][0]["email_configs"][0]
    assert [email["to"], email["from"], email["smarthost"], email["auth_username"]] == [
        f"ops{value}",
        f"alerts{value}",
        f"smtp{value}",
        f"user{value}",
    ]
    blackbox = yaml.safe_load(obs.render_blackbox_yml(spec))
    assert blackbox["modules"]["tls_0"]["tcp"]["tls_config"]["server_name"] == f"example.com{value}"


def test_alert_rules_refuse_target_names_they_would_write_into_promql():
    with pytest.raises(ValueError, match="target name"):
        spec_with(apps=(obs.AppTarget('api"}) or vector(1', "shop-api", 3000, "/metrics"),))


def cloud_init(**changes: object) -> CloudInitSpec:
    values: dict[str, object] = dict(
        deploy_user="deploy",
        admin_ssh_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmtrCxHTDSu4Fgp8J ops@example.com",),
        host_private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        host_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOK12 host\n",
        advertise_addr="198.51.100.10",
        data_device="/dev/disk/by-id/scsi-0HC_Volume_1",
    )
    values.update(changes)
    return CloudInitSpec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"deploy_user": "deploy\nAllowUsers root"},
        {"deploy_user": "root"},
        {"admin_ssh_keys": ("ssh-ed25519 AAAA ops\nssh-ed25519 BBBB attacker",)},
        {"advertise_addr": "198.51.100.10 --force-new-cluster"},
        {"data_device": "/dev/sdb; reboot"},
    ],
    ids=["user with a newline", "root", "key with a second line", "advertise address", "device"],
)
def test_cloud_init_refuses_what_would_change_sshd_authorized_keys_or_a_command(changes: dict[str, object]):
    with pytest.raises(ValueError):
        cloud_init(**changes)


@pytest.mark.parametrize(
    "label", sorted(name for name in PRINTABLE if name not in ("newline", "look-alike Unicode", "5000 characters"))
)
def test_cloud_init_writes_a_printable_key_comment_as_data(label: str):
    key = f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmtrCxHTDSu4Fgp8J ops{PRINTABLE[label]}"
    doc = yaml.safe_load(render_cloud_init(cloud_init(admin_ssh_keys=(key,))))
    assert doc["users"][0]["ssh_authorized_keys"] == [key]


# ----------------------------------------------------------------------------- exec form


def test_hostile_command_and_env_values_reach_swarm_as_data_not_shell():
    """Health commands run in swarm's CMD form and env is a list of NAME=value: neither is parsed
    by a shell, so config/ lets printable text through and the service carries it unchanged."""
    value = "".join(PRINTABLE[label] for label in ("double quote", "command substitution", "backticks", "newline"))
    run = run_with(
        "prod",
        {
            "keel:services": {
                "api": {"env": {"GREETING": value}, "health": {"http_path": None, "command": ["wget", value]}}
            }
        },
    )
    assert run.error is None, run.error
    spec = run.one("docker:index/service:Service", "api-service").inputs["taskSpec"]["containerSpec"]
    assert spec["healthcheck"]["tests"] == ["CMD", "wget", value]
    assert spec["env"]["GREETING"] == value
