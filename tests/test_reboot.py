"""What happens when the host reboots, step by step (README: "What happens on a reboot").

One test per step, each asserting the configuration that makes the step happen, on the prod
stack as the program declares it (mock runtime) and on the user data it renders. The systemd
units are also loaded by systemd itself (tests/realtools/test_systemd_units.py) and the proxy's
restart is run with a real nginx (tests/realtools/test_proxy_reload.py).
"""

from __future__ import annotations

import functools

import yaml

from render import host_units, proxy_runtime
from render.cloud_init import DATA_DIR
from tests.helpers import run_with
from tools import mockrun

SERVICE = "docker:index/service:Service"
VOLUME = "docker:index/volume:Volume"


@functools.cache
def prod() -> mockrun.Run:
    run = run_with("prod", {"keel:observability": {"enabled": True, "alerts": {"kind": "none"}}})
    assert run.error is None, run.error
    return run


@functools.cache
def user_data() -> dict:
    return yaml.safe_load(str(prod().one("hcloud:index/server:Server").inputs["userData"]))


def unit(name: str) -> str:
    path = f"{host_units.UNIT_DIR}/{name}"
    return next(f["content"] for f in user_data()["write_files"] if f["path"] == path)


def test_step_1_the_data_volume_is_mounted_by_id_without_blocking_the_boot():
    (mount,) = user_data()["mounts"]
    device, mount_point, fstype, options = mount[:4]
    assert device.startswith("/dev/disk/by-id/scsi-0HC_Volume_") and mount_point == DATA_DIR
    # nofail: a missing volume never keeps SSH from coming up; the device gets 5 minutes to appear.
    assert "nofail" in options and "x-systemd.device-timeout=300s" in options
    assert fstype == "ext4"


def test_step_2_docker_starts_only_once_the_data_volume_is_mounted():
    dropin = next(f["content"] for f in user_data()["write_files"] if f["path"] == host_units.DOCKER_DROPIN)
    assert "Requires=mnt-data.mount" in dropin and "After=mnt-data.mount" in dropin


def test_step_3_docker_is_enabled_at_boot_and_the_swarm_resumes_from_its_own_state():
    runcmd = user_data()["runcmd"]
    assert ["systemctl", "enable", "--now", "docker"] in runcmd
    # swarm init ran once at first boot (cloud-init runcmd); the node's swarm state lives in
    # /var/lib/docker and the daemon resumes it. The script leaves an active node alone.
    init = next(f["content"] for f in user_data()["write_files"] if f["path"] == "/usr/local/sbin/swarm-init")
    assert 'if [ "$state" != "active" ]; then' in init


def test_step_4_every_long_running_service_is_restarted_whatever_its_exit_code():
    services = prod().of_type(SERVICE)
    long_running = [s for s in services if s.inputs["mode"].get("replicated", {}).get("replicas") != 0]
    assert len(long_running) >= 10
    for service in long_running:
        assert service.inputs["taskSpec"]["restartPolicy"]["condition"] == "any", service.urn


def test_step_5_stores_come_back_on_the_manager_with_their_data_on_the_volume():
    for store in ("db", "cache"):
        volume = prod().one(VOLUME, f"{store}-data")
        assert volume.inputs["driverOpts"]["device"].startswith(f"{DATA_DIR}/volumes/"), volume.urn
        service = prod().one(SERVICE, f"{store}-service")
        assert service.inputs["taskSpec"]["placement"]["constraints"] == ["node.role==manager"], service.urn


def test_step_6_the_proxy_starts_from_the_last_configuration_nginx_accepted():
    proxy = prod().one(SERVICE, "proxy-service")
    assert proxy.inputs["taskSpec"]["containerSpec"]["commands"] == ["/bin/sh", proxy_runtime.WATCHER_PATH]
    watcher = proxy_runtime.watcher_script()
    assert """nginx -c "$conf/current/nginx.conf" -g 'daemon off;' &""" in watcher
    # A set staged but never accepted is only tested, never started from.
    assert 'nginx -c "$conf/$staged' not in watcher


def test_step_7_prometheus_and_grafana_resume_from_their_volumes():
    for part in ("prometheus-data", "grafana-data"):
        volume = prod().one(VOLUME, f"observability-{part}")
        assert volume.inputs["driverOpts"]["device"] == f"{DATA_DIR}/volumes/shop-{part}", volume.urn


def test_step_8_the_host_timers_resume():
    # A prune missed while the host was down runs at boot; the upgrade window does not.
    assert "Persistent=true" in unit("keel-docker-prune.timer")
    assert "Persistent=false" in unit("keel-docker-upgrade.timer")
    # The reboot flag and the swarm report are rewritten a minute after boot.
    assert "OnBootSec=1min" in unit("keel-reboot-required.timer")
    assert "OnBootSec=1min" in unit("keel-swarm-report.timer")
    runcmd = user_data()["runcmd"]
    assert ["systemctl", "enable", "--now", *host_units.timers(host_units.HostUnitsSpec(DATA_DIR, DATA_DIR))] in runcmd


def test_step_9_the_heartbeat_resumes_and_its_gap_is_what_the_dead_mans_switch_reports():
    from render import observability as obs
    from tests.helpers import observability_config, observability_spec

    spec = observability_spec(
        observability_config("prod", alerts={"kind": "none", "heartbeat_url_secret": "alert_heartbeat"})
    )
    rules = yaml.safe_load(obs.render_alert_rules(spec))
    watchdog = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "Watchdog")
    assert watchdog["expr"] == "vector(1)"
    route = yaml.safe_load(obs.render_alertmanager_yml(spec))["route"]["routes"][0]
    assert route["receiver"] == "heartbeat" and route["repeat_interval"] == obs.HEARTBEAT_INTERVAL
