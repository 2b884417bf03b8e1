"""Bad configuration, tried as a new user would: one clear message, raised before any resource.

Each case merges one bad fragment into a real stack file, runs the whole program under the
mock runtime and compares the exact message. The message must start with the key path.
"""

from __future__ import annotations

from typing import Any

import pytest

from config import ConfigError
from tests.helpers import run_with
from tools import mockrun

RSA_2048 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDCdYj2clF+LYrf6WsH0JbAKot2GA2toR88Se4ij+0P+/FtvN6AHkNODEcp7AgK21MNM2ng15nlsTWoikQUd0m7PDQ/WhZ6rhBuCTldc9NVSXiTP4obmLqzZze09olKVmL2yMe2ZU+5dsi4ePFtK41RXFP4ANA4Y22VT9ZJO6Fx1Vz0bJIc1UO2gy4UJE4Yo9kEOK8f5ArP56SZb4vH0THky8ohm020ABX1CJ+GK/olF+iSiAOsnr3xf+5De61B/pAx7PTOMKrg3RNlvHa3yaT6xVXtrDdPnD8GeXiiybHx4RZSjUsaWLNr6O0glmj4+F5FHhdCAd4/utnf1XXkJSJp weak@example.com"  # noqa: E501
RSA_3072 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCoKl7MHrpcUGSu/ZIPCBNRRYwVuSu4wsP+fTk/S4h+KUDxsew0VOdy67T3oTgipIu8FvRasGl1kF79cKH4s2cBBhyeY7xpKx2dQ1gmBGmSuun4jb3PyfcProD++QnS0eFF+JOvIzcZoQzEZ/hhnzkIcJVvZ1ZKYvYG/7RLY0uHi3/uiz+k354Dufk3YJWymOS85KvhjEIqIlrgroG1aJRIllFV3nqZRsc0L9f212L1z9JNh1mPxbcO5KmHYyAr5JRXxkD0qVOPQ/W3b9vB8S31CNw+pE1D58puiXS4JMifFZDhuUw1lUhd4h3RxzyfbzmvXRqEH3WXYFED+oIdwo52t7jt8VGlis1NnfmFliaCpJkjeIW7PVvniDQcrtl9Ob9SaTZTsZSpUTBucu5hGWaZaARZ9GHUW75a0FQbPeVBbXMvKvW3ax91UH9SnwOawuvoc0Yxo8FkJ8OArdOPpK7BoSTKbhfk89nu80zVMY0Qhrt/0C8Da28gOHeU9LxS5Pk= ok@example.com"  # noqa: E501
TYPES = (
    "cx23, cx33, cx43, cx53, cax11, cax21, cax31, cax41, cpx12, cpx22, cpx32, cpx42, cpx52, cpx62, ccx13, ccx23, ccx33"
)

CASES: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "unknown key",
        "prod",
        {"keel:host": {"server_typ": "cx33"}},
        "host/server_typ: is not a known key; did you mean server_type?",
    ),
    (
        "unknown top-level key",
        "prod",
        {"keel:hots": {"provider": "hcloud"}},
        "hots: is not a config section; did you mean host?",
    ),
    (
        "wrong type",
        "prod",
        {"keel:host": {"data_volume_gib": "ten"}},
        'host/data_volume_gib: found "ten"; expected a whole number',
    ),
    (
        "missing discriminator",
        "prod",
        {"keel:host": {"provider": None}},
        "host/provider: is required but missing; expected one of 'hcloud', 'local'",
    ),
    (
        "deprecated server type",
        "prod",
        {"keel:host": {"server_type": "cx11"}},
        f'host/server_type: "cx11" is deprecated and no longer sold by Hetzner; use one of {TYPES}',
    ),
    (
        "unknown server type",
        "prod",
        {"keel:host": {"server_type": "cx99"}},
        f'host/server_type: "cx99" is not offered by Hetzner; use one of {TYPES}',
    ),
    (
        "server type not sold in location",
        "prod",
        {"keel:host": {"server_type": "cax11", "location": "ash"}},
        'host/location: "ash" does not sell server_type "cax11"; expected one of fsn1, nbg1, hel1',
    ),
    (
        "bad CIDR",
        "prod",
        {"keel:host": {"admin_cidrs": ["10.0.0.300/32"]}},
        'host/admin_cidrs/0: found "10.0.0.300/32"; expected an IPv4 or IPv6 network such as 203.0.113.7/32',
    ),
    (
        "ssh open to the world",
        "prod",
        {"keel:host": {"admin_cidrs": ["203.0.113.0/28", "::/0"]}},
        'host/admin_cidrs/1: found "::/0", which opens SSH to the whole internet; '
        "expected the networks you administer from",
    ),
    (
        "bad ssh key",
        "prod",
        {"keel:host": {"admin_ssh_keys": ["not-a-key"]}},
        'host/admin_ssh_keys/0: found "not-a-key"; expected an OpenSSH public key line such as \'ssh-ed25519 '
        "AAAA... you@laptop'",
    ),
    (
        "bad domain",
        "prod",
        {"keel:dns": {"zone": "example..com"}},
        'dns/zone: found "example..com"; expected a lower-case DNS name such as app.example.com',
    ),
    (
        "hostname outside the zone",
        "prod",
        {"keel:dns": {"hostnames": ["example.com", "shop.example.org"]}},
        'dns/hostnames/1: "shop.example.org" is not inside the zone "example.com"; '
        "expected example.com or a name ending in .example.com",
    ),
    (
        "duplicate hostname",
        "prod",
        {"keel:dns": {"hostnames": ["example.com", "example.com"]}},
        'dns/hostnames: "example.com" is listed twice; expected each hostname once',
    ),
    (
        "port out of range",
        "prod",
        {"keel:services": {"api": {"port": 70000}}},
        "services/api/port: found 70000; expected at most 65535",
    ),
    (
        "duplicate route",
        "dev",
        {"keel:proxy": {"routes": [{"path": "/", "service": "web"}, {"path": "/", "service": "api"}]}},
        'proxy/routes/1/path: "/" is routed twice; expected each path once',
    ),
    (
        "route to an undefined service",
        "dev",
        {"keel:proxy": {"routes": [{"path": "/", "service": "frontend"}]}},
        'proxy/routes/0/service: "frontend" is not a service; expected one of api, web',
    ),
    (
        "route to a store",
        "dev",
        {"keel:proxy": {"routes": [{"path": "/", "service": "db"}]}},
        'proxy/routes/0/service: "db" is a postgres store; expected an app service '
        "(stores are never exposed through the proxy)",
    ),
    (
        "unknown service kind",
        "dev",
        {"keel:services": {"db": {"kind": "mysql"}}},
        'services/db/kind: found "mysql"; expected one of app, external, mariadb, postgres, redis, volume, worker',
    ),
    (
        "service kind written as a list",
        "dev",
        {"keel:services": {"db": {"kind": ["postgres"]}}},
        "services/db/kind: found a list; expected one of app, external, mariadb, postgres, redis, volume, worker",
    ),
    (
        "latest image outside dev",
        "prod",
        {"keel:services": {"api": {"image": "ghcr.io/example/shop-api:latest"}}},
        'services/api/image: "ghcr.io/example/shop-api:latest" is not pinned; expected a fixed tag or a digest '
        "(latest is allowed only in dev, and this stack's environment is prod)",
    ),
    (
        "untagged image outside dev",
        "staging",
        {"keel:services": {"web": {"image": "ghcr.io/example/shop-web"}}},
        'services/web/image: "ghcr.io/example/shop-web" is not pinned; expected a fixed tag or a digest '
        "(latest is allowed only in dev, and this stack's environment is staging)",
    ),
    (
        "unpinned backup scheduler outside dev",
        "prod",
        {"keel:backup": {"scheduler_image": "crazymax/swarm-cronjob:latest"}},
        'backup/scheduler_image: "crazymax/swarm-cronjob:latest" is not pinned; expected a fixed tag or a digest '
        "(latest is allowed only in dev, and this stack's environment is prod)",
    ),
    (
        "mount of an undefined volume",
        "dev",
        {"keel:services": {"api": {"volumes": {"/data": "files"}}}},
        'services/api/volumes/"/data": "files" is not a volume store; expected one of uploads '
        "(declare it under services with kind: volume)",
    ),
    (
        "reservation above limit",
        "dev",
        {"keel:services": {"api": {"resources": {"memory_mb": 64, "memory_reservation_mb": 128}}}},
        "services/api/resources/memory_reservation_mb: found 128; expected at most the limit memory_mb (64)",
    ),
    (
        "health check with two probes",
        "dev",
        {"keel:services": {"api": {"health": {"command": ["true"]}}}},
        "services/api/health: set exactly one of http_path or command",
    ),
    (
        "origin certificate on unproxied records",
        "prod",
        {"keel:dns": {"proxied": False}},
        'proxy/tls/mode: "cloudflare-origin" certificates are trusted only by Cloudflare\'s proxy, '
        "but dns/proxied is false; use acme for unproxied records",
    ),
    (
        "memory over capacity",
        "staging",
        {"keel:services": {"api": {"replicas": 6}}},
        "host/server_type: memory limits add up to 6232 MiB (largest: api 3072, db 1024, proxy 256; rollout "
        "headroom 512), over 90% of the host's 4096 MiB (3686 MiB); expected a larger server type or smaller limits",
    ),
    (
        "backups without a repository",
        "prod",
        {"keel:backup": {"enabled": True, "repository": None}},
        "backup/repository: is required when backups are enabled",
    ),
    (
        "bad cron schedule",
        "prod",
        {"keel:backup": {"schedule": "every hour"}},
        'backup/schedule: found "every hour"; expected 5 cron fields (minute hour day-of-month month '
        "day-of-week) such as '0 3 * * *', separated by single spaces",
    ),
    (
        "unknown environment",
        "prod",
        {"keel:environment": "production"},
        "environment: found \"production\"; expected one of 'dev', 'staging' or 'prod'",
    ),
    (
        "missing topology file",
        "prod",
        {"keel:base": "topology/missing.yaml"},
        'base: found "topology/missing.yaml", which is not a file; '
        "expected a topology YAML path relative to the project directory, such as topology/webapp.yaml",
    ),
    (
        "a network name from before the split by role",
        "prod",
        {"keel:services": {"web": {"networks": ["public"]}}},
        'services/web/networks/0: found "public", a network name that is no longer used; expected edge '
        "(networks are now split by role: edge joins the proxy and the apps, data joins the apps and the stores; "
        "Prometheus reaches an app with a metrics_path on the monitoring network by itself)",
    ),
    (
        "a routed app off the edge network",
        "prod",
        {"keel:services": {"web": {"networks": ["data"]}}},
        'proxy/routes/0/service: "web" is not on the edge network, where the proxy reaches it; '
        "add edge to services/web/networks",
    ),
    (
        "an RSA admin key below 3072 bits",
        "prod",
        {"keel:host": {"admin_ssh_keys": [RSA_2048]}},
        "host/admin_ssh_keys/0: found an ssh-rsa key of 2048 bits; expected at least 3072 bits, "
        "or an ed25519 key (ssh-keygen -t ed25519)",
    ),
    (
        "a reboot window that is not a time of day",
        "prod",
        {"keel:host": {"reboot_window": "4am"}},
        'host/reboot_window: found "4am"; expected a time of day HH:MM in UTC, such as 04:00',
    ),
    (
        "a route that both denies and serves",
        "prod",
        {"keel:proxy": {"routes": [{"path": "/actuator/", "service": "api", "deny": True}]}},
        'proxy/routes/0/deny: is true but the route also names service "api"; expected one of the two',
    ),
    (
        "a route that neither denies nor serves",
        "prod",
        {"keel:proxy": {"routes": [{"path": "/actuator/"}]}},
        "proxy/routes/0/service: is required (or deny: true, to answer 404 for the prefix)",
    ),
    (
        "a deny route admitting networks",
        "prod",
        {"keel:proxy": {"routes": [{"path": "/actuator/", "deny": True, "allow_from": ["10.0.0.0/8"]}]}},
        "proxy/routes/0/allow_from: is set on a deny route; expected a service to serve those networks, "
        "or no allow_from",
    ),
    (
        "a route admitting a network that is not one",
        "prod",
        {"keel:proxy": {"routes": [{"path": "/admin/", "service": "api", "allow_from": ["10.0.0.300/8"]}]}},
        'proxy/routes/0/allow_from/0: found "10.0.0.300/8"; expected a network such as 203.0.113.0/24',
    ),
    (
        "two logins for one registry",
        "prod",
        {
            "keel:services": {
                "web": {"registry": {"server": "ghcr.io", "username": "ci", "password_secret": "ghcr_token"}},
                "api": {"registry": {"server": "ghcr.io", "username": "bot", "password_secret": "ghcr_bot"}},
            }
        },
        'services/api/registry: logs in to "ghcr.io" as "bot" with "ghcr_bot", but services/web/registry uses '
        '"ci" with "ghcr_token"; expected one username and password_secret per registry server',
    ),
]


# Workers and scheduled jobs (issue 17).
WORKER = {
    "kind": "worker",
    "image": "ghcr.io/example/shop-api:1.4.2",
    "health": {"heartbeat_file": "/tmp/heartbeat"},
    "resources": {"memory_mb": 64},
}
JOB = {"app": "api", "command": ["node", "report.js"], "schedule": "0 3 * * *", "resources": {"memory_mb": 64}}
IMAGE_JOB = {**{k: v for k, v in JOB.items() if k != "app"}, "image": "alpine:3.21"}
CASES += [
    (
        "worker with a port",
        "prod",
        {"keel:services": {"mailer": {**WORKER, "port": 3000}}},
        "services/mailer/port: found 3000, but a worker listens on no port; remove it, or use kind app for a "
        "service that serves requests",
    ),
    (
        "worker probed over http",
        "prod",
        {"keel:services": {"mailer": {**WORKER, "health": {"http_path": "/health"}}}},
        "services/mailer/health/http_path: a worker has no port to probe; expected command or heartbeat_file instead",
    ),
    (
        "worker without a health check",
        "prod",
        {"keel:services": {"mailer": {k: v for k, v in WORKER.items() if k != "health"}}},
        "services/mailer/health: is required but missing",
    ),
    (
        "worker heartbeat path that is not plain",
        "prod",
        {"keel:services": {"mailer": {**WORKER, "health": {"heartbeat_file": "tmp/hb;rm"}}}},
        'services/mailer/health/heartbeat_file: found "tmp/hb;rm"; expected an absolute path such as '
        "/tmp/heartbeat (letters, digits, ., _, - and /)",
    ),
    (
        "worker grace period longer than its rollout's monitor window",
        "prod",
        {"keel:services": {"mailer": {**WORKER, "stop_grace_period_s": 300, "rollout": {"monitor_s": 60}}}},
        "services/mailer/rollout/monitor_s: found 60, shorter than stop_grace_period_s (300) plus swarm's 2s "
        "stop delay; expected at least 302, or leave it unset",
    ),
    (
        "route to a worker",
        "prod",
        {"keel:services": {"mailer": WORKER}, "keel:proxy": {"routes": [{"path": "/mail/", "service": "mailer"}]}},
        'proxy/routes/0/service: "mailer" is a worker, which serves no requests; expected an app service '
        "(kind app, with a port)",
    ),
    (
        "job schedule with a descriptor",
        "prod",
        {"keel:jobs": {"report": {**JOB, "schedule": "@daily"}}},
        'jobs/report/schedule: found "@daily"; expected 5 cron fields (minute hour day-of-month month '
        "day-of-week) such as '0 3 * * *', separated by single spaces",
    ),
    (
        "job with an app and an image",
        "prod",
        {"keel:jobs": {"report": {**JOB, "image": "alpine:3.21"}}},
        "jobs/report: set exactly one of app (run with that app's image) or image",
    ),
    (
        "job naming a store as its app",
        "prod",
        {"keel:jobs": {"report": {**JOB, "app": "db"}}},
        'jobs/report/app: "db" is a postgres store; expected an app or worker whose image the job runs '
        "(one of api, web)",
    ),
    (
        "job overriding its app's user",
        "prod",
        {"keel:jobs": {"report": {**JOB, "user": "0:0"}}},
        "jobs/report/user: comes from services/api when app is set; remove it here or set it on the app",
    ),
    (
        "job image unpinned outside dev",
        "prod",
        {"keel:jobs": {"report": {**IMAGE_JOB, "image": "alpine:latest"}}},
        'jobs/report/image: "alpine:latest" is not pinned; expected a fixed tag or a digest (latest is allowed '
        "only in dev, and this stack's environment is prod)",
    ),
    (
        "job running as root in prod",
        "prod",
        {"keel:jobs": {"report": {**IMAGE_JOB, "user": "0:0"}}},
        'jobs/report/user: is root; expected a uid:gid such as "10001:10001" (prod), or app: set to an app whose '
        "exemptions/root says why",
    ),
    (
        "job with the image's own user in prod",
        "prod",
        {"keel:jobs": {"report": {**IMAGE_JOB, "user": None}}},
        "jobs/report/user: is null, which runs the image's own USER, often root; expected a uid:gid such as "
        '"10001:10001" (prod), or app: set to an app whose exemptions/root says why',
    ),
    (
        "job secret naming no store",
        "prod",
        {"keel:jobs": {"report": {**JOB, "secrets": {"DB": "store:nope"}}}},
        'jobs/report/secrets/DB: "store:nope" names no store with a password or URL; expected one of '
        "store:cache, store:db",
    ),
    (
        "job whose service name is taken",
        "prod",
        {"keel:services": {"job-report": WORKER}, "keel:jobs": {"report": JOB}},
        "jobs/report: its service would be named shop-job-report, like services/job-report; rename one of them",
    ),
    (
        "two managers",
        "prod",
        {"keel:host": {"pools": {"extra": {"role": "manager", "count": 1}}}},
        "host/pools: found 2 managers (the host and 1 in manager pools); expected 1 or 3: raft keeps the swarm "
        "writable only while a majority of managers is up, so 2 tolerate no failure and stop the swarm when either "
        "one fails",
    ),
    (
        "four managers",
        "prod",
        {"keel:host": {"pools": {"a": {"role": "manager", "count": 2}, "b": {"role": "manager", "count": 1}}}},
        "host/pools: found 4 managers (the host and 3 in manager pools); expected 1 or 3: raft keeps the swarm "
        "writable only while a majority of managers is up, so 2 tolerate no failure and stop the swarm when either "
        "one fails",
    ),
    (
        "a pool in another network zone",
        "prod",
        {"keel:host": {"pools": {"workers": {"count": 1, "location": "ash", "server_type": "cpx22"}}}},
        'host/pools/workers/location: found "ash" in network zone us-east; expected a location in eu-central like '
        "the host's fsn1 (a private network spans one zone)",
    ),
    (
        "a pool of another architecture",
        "prod",
        {"keel:host": {"pools": {"workers": {"count": 1, "server_type": "cax21"}}}},
        'host/pools/workers/server_type: found "cax21", an arm type; expected an x86 type like the host\'s cx33 '
        "(images built on the host and pinned to their digest run on every node, so every node has one architecture)",
    ),
    (
        "a pool label under keel.",
        "prod",
        {"keel:host": {"pools": {"workers": {"count": 1, "labels": {"keel.node": "x"}}}}},
        'host/pools/workers/labels/keel.node: found "keel.node"; keys under keel. are set by keel itself '
        "(keel.node names each node)",
    ),
    (
        "a public private network",
        "prod",
        {"keel:host": {"pools": {"workers": {"count": 1}}, "private_network": "203.0.113.0/24"}},
        'host/private_network: found "203.0.113.0/24"; expected a private IPv4 network of /16 to /23 such as '
        "10.44.0.0/16",
    ),
    (
        "an app pinned to a pool emptied",
        "prod",
        {
            "keel:host": {"pools": {"workers": {"count": 0, "labels": {"tier": "batch"}}}},
            "keel:services": {"api": {"constraints": ["node.labels.tier==batch"]}},
        },
        'services/api/constraints/0: found "node.labels.tier==batch", but no node would run it: pool workers has '
        "that label but no nodes (count 0): move services/api first (change or remove this constraint), then lower "
        "the count",
    ),
    (
        "an app pinned to a label no pool has",
        "prod",
        {
            "keel:host": {"pools": {"workers": {"count": 1}}},
            "keel:services": {"api": {"constraints": ["node.labels.tier==batch"]}},
        },
        'services/api/constraints/0: found "node.labels.tier==batch", but no node would run it: no pool has that label',
    ),
    (
        "an app pinned to keel's own node label",
        "prod",
        {
            "keel:host": {"pools": {"workers": {"count": 1}}},
            "keel:services": {"api": {"constraints": ["node.labels.keel.node==shop-prod"]}},
        },
        'services/api/constraints/0: found "node.labels.keel.node==shop-prod"; keel.* labels are keel\'s own '
        "(keel.node pins its stores to the host); expected a label of a pool, such as node.labels.tier==app",
    ),
    (
        "more pinned to the host than it holds, with room elsewhere",
        "prod",
        {
            "keel:host": {"pools": {"big": {"count": 1, "server_type": "cx53"}}},
            "keel:services": {"db": {"resources": {"memory_mb": 7000, "memory_reservation_mb": 1000}}},
        },
        "host/server_type: the tasks that must run on node host add up to 10944 MiB (largest: db 7000, api 2304, "
        "proxy 256), over 90% of its 8192 MiB (7372 MiB); expected a larger server type or smaller limits",
    ),
    (
        "an app task no node has room for",
        "prod",
        {
            "keel:host": {"pools": {"w": {"count": 2, "server_type": "cx23"}}},
            "keel:services": {"web": {"resources": {"memory_mb": 4000, "memory_reservation_mb": 1000}, "replicas": 1}},
        },
        "services/web/resources/memory_mb: found 4000, more than the 3534 MiB the roomiest node has left beside the "
        "tasks pinned to it; expected a smaller limit or a larger server type",
    ),
    (
        "more than all the nodes hold",
        "prod",
        {
            "keel:host": {"pools": {"w": {"count": 1, "server_type": "cx23"}}},
            "keel:services": {"web": {"resources": {"memory_mb": 1500, "memory_reservation_mb": 1000}, "replicas": 4}},
        },
        "host/pools: memory limits add up to 13644 MiB (largest: web 6000, api 2304, db 2048; rollout headroom "
        "1500), over 90% of the 2 nodes' 12288 MiB (11059 MiB); expected a larger server type, more nodes or smaller "
        "limits",
    ),
]


def assert_fails_cleanly(run: mockrun.Run, expected: str) -> None:
    assert isinstance(run.error, ConfigError), f"expected a ConfigError, got {run.error!r}"
    assert str(run.error) == expected
    assert run.resources == [], f"registered before failing: {[r.urn for r in run.resources]}"


@pytest.mark.parametrize(("stack", "fragment", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_fails_with_key_path_before_any_resource(stack: str, fragment: dict[str, Any], expected: str):
    assert_fails_cleanly(run_with(stack, fragment), expected)


def test_fails_when_secret_is_stored_in_plaintext():
    run = mockrun.run("prod", overrides={"keel:jwt_secret": "hunter2-but-longer"})
    assert_fails_cleanly(
        run,
        "jwt_secret: is stored in plaintext but services/api/secrets/JWT_SECRET needs a secret; "
        "run: pulumi config set --secret jwt_secret <value>",
    )


def test_fails_when_named_secret_is_not_set():
    run = mockrun.run(
        "prod",
        fill_secrets=False,
        overrides={"hcloud:token": "t", "cloudflare:apiToken": "t"},
        secret_keys=["hcloud:token", "cloudflare:apiToken"],
    )
    assert_fails_cleanly(
        run,
        "8 configuration problems:\n"
        '  - observability/alerts/webhook_url_secret: names the secret "alert_webhook_url", which is not set; '
        "run: pulumi config set --secret alert_webhook_url <value>\n"
        '  - backup/repository/access_key_secret: names the secret "backup_access_key", which is not set; '
        "run: pulumi config set --secret backup_access_key <value>\n"
        '  - backup/repository/password_secret: names the secret "backup_password", which is not set; '
        "run: pulumi config set --secret backup_password <value>\n"
        '  - backup/repository/secret_key_secret: names the secret "backup_secret_key", which is not set; '
        "run: pulumi config set --secret backup_secret_key <value>\n"
        '  - services/api/secrets/JWT_SECRET: names the secret "jwt_secret", which is not set; '
        "run: pulumi config set --secret jwt_secret <value>\n"
        # prod archives its PostgreSQL store's WAL by default (backup/pitr), with keys of its own.
        '  - backup/pitr/access_key_secret: names the secret "pitr_access_key", which is not set; '
        "run: pulumi config set --secret pitr_access_key <value>\n"
        '  - backup/pitr/cipher_secret: names the secret "pitr_cipher_password", which is not set; '
        "run: pulumi config set --secret pitr_cipher_password <value>\n"
        '  - backup/pitr/secret_key_secret: names the secret "pitr_secret_key", which is not set; '
        "run: pulumi config set --secret pitr_secret_key <value>",
    )


def test_fails_when_provider_token_is_plaintext():
    run = mockrun.run("staging", overrides={"hcloud:token": "plain-token"})
    assert_fails_cleanly(
        run, "hcloud:token: is stored in plaintext; run: pulumi config set --secret hcloud:token <token>"
    )


def test_lists_every_missing_key_at_once():
    run = mockrun.run("prod", overrides={"keel:host": {"provider": "hcloud"}})
    assert_fails_cleanly(
        run,
        "2 configuration problems:\n"
        "  - host/admin_ssh_keys: is required but missing\n"
        "  - host/admin_cidrs: is required but missing",
    )


def test_config_error_is_a_run_error_so_pulumi_prints_no_traceback():
    import pulumi

    assert issubclass(ConfigError, pulumi.RunError)


def test_fails_on_a_name_written_twice_in_the_topology_file(tmp_path, monkeypatch):
    from config import loader

    (tmp_path / "topology.yaml").write_text("services:\n  api:\n    image: a:1\n  api:\n    image: b:2\n")
    with pytest.raises(ConfigError) as caught:
        loader.parse({"base": "topology.yaml", "host": '{"provider": "local"}'}, base_dir=tmp_path)
    assert str(caught.value) == (
        'base (topology.yaml): line 4, column 3: defines the key "api" twice in one mapping; expected each key once'
    )


def test_fails_when_a_secret_is_shorter_than_its_rule_without_showing_it():
    run = mockrun.run(
        "prod",
        overrides={"keel:jwt_secret": "short-value", "keel:secret_rules": {"jwt_secret": {"min_length": 32}}},
        secret_keys=["keel:jwt_secret"],
    )
    assert_fails_cleanly(
        run,
        'secret_rules/jwt_secret: the value of "jwt_secret" (used by services/api/secrets/JWT_SECRET) is 11 '
        "characters long; expected at least 32 (generate one with: openssl rand -base64 32)",
    )
    assert "short-value" not in str(run.error)


def test_fails_when_a_secret_does_not_match_its_pattern():
    run = mockrun.run(
        "prod",
        overrides={"keel:jwt_secret": "x" * 40 + "!", "keel:secret_rules": {"jwt_secret": {"pattern": "^[a-z]+$"}}},
        secret_keys=["keel:jwt_secret"],
    )
    assert_fails_cleanly(
        run,
        'secret_rules/jwt_secret: the value of "jwt_secret" (used by services/api/secrets/JWT_SECRET) '
        "does not match ^[a-z]+$",
    )


def test_fails_when_a_rule_names_no_secret_of_the_config():
    run = mockrun.run("prod", overrides={"keel:secret_rules": {"jwt_secert": {"min_length": 32}}})
    assert_fails_cleanly(
        run,
        'secret_rules/jwt_secert: "jwt_secert" is not a secret the config names; '
        "expected one of alert_webhook_url, backup_access_key, backup_password, backup_secret_key, jwt_secret, "
        "pitr_access_key, pitr_cipher_password, pitr_secret_key",
    )


def test_a_long_enough_secret_passes_its_rule():
    run = mockrun.run(
        "prod",
        overrides={"keel:jwt_secret": "a" * 32, "keel:secret_rules": {"jwt_secret": {"min_length": 32}}},
        secret_keys=["keel:jwt_secret"],
    )
    assert run.error is None, run.error


def test_an_rsa_admin_key_of_3072_bits_is_accepted() -> None:
    from tests.helpers import parsed

    cfg = parsed("prod", {"keel:host": {"admin_ssh_keys": [RSA_3072]}})
    assert cfg.host.admin_ssh_keys == [RSA_3072]  # type: ignore[union-attr]
