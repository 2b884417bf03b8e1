"""The read-back model of kreuzwerker/terraform-provider-docker v4.5.0 (what pulumi-docker 5.2.0 bundles).

Each test names the provider (or Docker client, daemon, bridge) source it mirrors; the paths are
internal/provider/ at v4.5.0 unless said otherwise.
"""

from __future__ import annotations

import copy
import inspect
import re
from pathlib import Path
from typing import Any

import pulumi_docker
import pytest

from components import swarm
from tests.helpers import stack_run
from tools.readback import docker
from tools.readback.model import ResourceModel

ROOT = Path(__file__).resolve().parents[2]
SERVICE = docker.SERVICE

BASE_SERVICE: dict[str, Any] = {
    "name": "shop-web",
    "labels": [{"label": "keel.role", "value": "app"}, {"label": "keel.service", "value": "web"}],
    "mode": {"replicated": {"replicas": 1}},
    "taskSpec": {
        "containerSpec": {
            "image": "nginx:1.28.0-alpine",
            "healthcheck": {
                "tests": ["CMD", "true"],
                "interval": "30s",
                "timeout": "10s",
                "startPeriod": "30s",
                "retries": 3,
            },
            "stopGracePeriod": "30s",
        },
        "restartPolicy": {"condition": "any", "delay": "5s", "window": "2m", "maxAttempts": 0},
        "logDriver": {"name": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
    },
    "endpointSpec": {"mode": "vip"},
    "updateConfig": {
        "order": "start-first",
        "failureAction": "rollback",
        "parallelism": 1,
        "delay": "0s",
        "monitor": "30s",
        "maxFailureRatio": "0.0",
    },
}


def service(changes: dict[str, Any] | None = None, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The base service with dotted paths set (or dropped)."""
    out = copy.deepcopy(BASE_SERVICE)
    for path, value in (changes or {}).items():
        *parents, last = path.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    for path in drop:
        *parents, last = path.split(".")
        node = out
        for part in parents:
            node = node[part]
        del node[last]
    return out


def changed_paths(
    model: ResourceModel, state: dict[str, Any], inputs: dict[str, Any], **kwargs: Any
) -> dict[str, bool]:
    """What the next preview shows: path -> whether it replaces."""
    return {change.path: change.replaces for change in model.diff(state, inputs, **kwargs)}


def updated(model: ResourceModel, state: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    return model.updated_state(state, inputs, "res")


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("0s", "0s"),
        ("0", "0s"),
        ("5s", "5s"),
        ("60s", "1m"),
        ("120s", "2m"),
        ("135s", "2m15s"),
        ("90m", "1h30m"),
        ("3600s", "1h"),
        ("3605s", "1h0m5s"),
        ("1h0m0s", "1h"),
        ("1.5s", "1.5s"),
        ("1500ms", "1.5s"),
        ("500ms", "500ms"),
        ("2.5ms", "2.5ms"),
        ("10us", "10µs"),
        ("7ns", "7ns"),
    ],
)
def test_durations_are_stored_as_go_short_durations(sent, stored):
    """resource_docker_service_structures.go shortDur: Go's time.Duration.String, then ``m0s`` and
    ``h0m`` trimmed; createContainerSpec & co. parse with time.ParseDuration."""
    assert docker.short_dur(sent) == stored


def test_a_duration_written_otherwise_is_a_perpetual_diff():
    """No service duration has a DiffSuppressFunc (resource_docker_service.go): the plan compares
    the config as written with what flattenServiceHealthcheck stored, after every update."""
    inputs = service({"taskSpec.containerSpec.healthcheck.interval": "60s"})
    state = SERVICE.state(inputs, "web")
    assert state["taskSpec"]["containerSpec"]["healthcheck"]["interval"] == "1m"
    assert changed_paths(SERVICE, state, inputs) == {
        "taskSpec.containerSpec.image": False,  # pinned by Create, see below
        "taskSpec.containerSpec.healthcheck.interval": False,
    }
    assert changed_paths(SERVICE, updated(SERVICE, state, inputs), inputs) == {
        "taskSpec.containerSpec.healthcheck.interval": False
    }


def test_the_service_builder_writes_every_duration_as_the_provider_reads_it_back():
    """components/swarm.duration must produce shortDur's form, or every service shows a diff."""
    for seconds in range(0, 3 * 3600 + 2):
        assert swarm.duration(seconds) == docker.short_dur(f"{seconds}s"), seconds


def test_a_duration_that_go_cannot_parse_is_refused():
    with pytest.raises(ValueError, match="not a Go duration"):
        docker.go_duration_ns("5 minutes")


# ----------------------------------------------------------------------------- max_failure_ratio


@pytest.mark.parametrize(
    ("sent", "stored"), [("0", "0.0"), ("0.0", "0.0"), ("0.2", "0.2"), ("0.25", "0.2"), ("0.15", "0.2")]
)
def test_max_failure_ratio_is_read_back_with_one_decimal_of_a_float32(sent, stored):
    """flattenServiceUpdateOrRollbackConfig: FormatFloat(float64(float32 ratio), 'f', 1, 64)."""
    assert docker.one_decimal(sent) == stored


def test_a_max_failure_ratio_is_compared_as_a_float():
    """validators.go suppressEquivalentFloatRatio hides ``0`` against ``0.0`` but not two decimals."""
    zero = service({"updateConfig.maxFailureRatio": "0"})
    assert "updateConfig.maxFailureRatio" not in changed_paths(SERVICE, updated(SERVICE, {}, zero), zero)
    two = service({"updateConfig.maxFailureRatio": "0.25"})
    assert changed_paths(SERVICE, updated(SERVICE, {}, two), two) == {"updateConfig.maxFailureRatio": False}


# ----------------------------------------------------------------------------- image and platforms


def test_create_pins_the_image_to_its_registry_digest_and_update_does_not():
    """resourceDockerServiceCreate sets QueryRegistry (resource_docker_service_funcs.go);
    moby v28.5.2 client/service_create.go resolveContainerSpecImage appends the digest. Update
    never queries the registry: the second `up` unpins it, the third preview is clean."""
    inputs = service()
    created = SERVICE.state(inputs, "web")
    assert created["taskSpec"]["containerSpec"]["image"] == docker.pinned("nginx:1.28.0-alpine")
    assert created["taskSpec"]["containerSpec"]["image"].startswith("nginx:1.28.0-alpine@sha256:")
    assert changed_paths(SERVICE, created, inputs) == {"taskSpec.containerSpec.image": False}
    after_update = updated(SERVICE, created, inputs)
    assert after_update["taskSpec"]["containerSpec"]["image"] == "nginx:1.28.0-alpine"
    assert changed_paths(SERVICE, after_update, inputs) == {}


def test_create_replaces_the_platforms_a_service_names_with_the_manifests():
    """resolveContainerSpecImage (moby v28.5.2 client/service_create.go) sets
    ``taskSpec.Placement.Platforms = imgPlatforms`` whenever the manifest lists platforms: it does
    not keep the service's own."""
    inputs = service({"taskSpec.placement": {"platforms": [{"architecture": "amd64", "os": "linux"}]}})
    created = SERVICE.state(inputs, "web")
    assert created["taskSpec"]["placement"]["platforms"] == list(docker.MANIFEST_PLATFORMS)
    assert "taskSpec.placement.platforms" in changed_paths(SERVICE, created, inputs)


def test_an_image_reference_with_a_digest_is_kept_by_create():
    """imageWithDigestString keeps a canonical reference (moby client/service_create.go)."""
    digest = "sha256:" + "a" * 64
    inputs = service({"taskSpec.containerSpec.image": f"nginx:1.28.0-alpine@{digest}"})
    created = SERVICE.state(inputs, "web")
    assert created["taskSpec"]["containerSpec"]["image"] == f"nginx:1.28.0-alpine@{digest}"
    assert changed_paths(SERVICE, created, inputs) == {}


def test_an_image_built_on_the_host_is_neither_pinned_nor_given_platforms():
    """The registry lookup fails for a local image: a warning (digestWarning), nothing changed."""
    inputs = service({"taskSpec.containerSpec.image": "shop-backup:f6b462617727"})
    created = SERVICE.state(inputs, "job", {"built_images": {"shop-backup:f6b462617727"}})
    assert created["taskSpec"]["containerSpec"]["image"] == "shop-backup:f6b462617727"
    assert "platforms" not in created["taskSpec"]["placement"]
    assert changed_paths(SERVICE, created, inputs) == {}


def test_platforms_filled_by_create_differ_only_where_the_program_sets_placement():
    """placement is Optional+Computed but placement.platforms is not (resource_docker_service.go):
    a service without placement keeps the state's block, one with constraints plans no platforms."""
    bare = service({"taskSpec.containerSpec.image": "nginx:1.28.0-alpine@sha256:" + "b" * 64})
    assert changed_paths(SERVICE, SERVICE.state(bare, "web"), bare) == {}
    placed = service({"taskSpec.placement": {"constraints": ["node.role==manager"]}})
    placed["taskSpec"]["containerSpec"]["image"] = bare["taskSpec"]["containerSpec"]["image"]
    assert changed_paths(SERVICE, SERVICE.state(placed, "db"), placed) == {"taskSpec.placement.platforms": False}


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("nginx:1.28.0-alpine", "nginx:1.28.0-alpine"),
        ("nginx", "nginx:latest"),
        ("docker.io/library/nginx:1.28", "nginx:1.28"),
        ("index.docker.io/prom/prometheus:v3.1.0", "prom/prometheus:v3.1.0"),
        ("library/redis:7", "redis:7"),
        ("ghcr.io/example/shop-web:1.4.2", "ghcr.io/example/shop-web:1.4.2"),
        ("localhost:5000/shop", "localhost:5000/shop:latest"),
        ("nginx@sha256:" + "c" * 64, "nginx@sha256:" + "c" * 64),
        ("Shop/Web:1", "Shop/Web:1"),
    ],
)
def test_image_references_are_stored_familiar_and_tagged(sent, stored):
    """moby client/service_create.go and service_update.go imageWithTagString:
    FamiliarString(TagNameOnly(ParseNormalizedNamed(image))); a reference that fails to parse
    (upper case) is sent as it is."""
    assert docker.familiar_tagged(sent) == stored


def test_an_image_written_in_its_long_form_is_a_perpetual_diff():
    """The image has no DiffSuppressFunc: every update sends the long form, the client rewrites it."""
    inputs = service({"taskSpec.containerSpec.image": "docker.io/library/nginx:1.28.0-alpine"})
    after_update = updated(SERVICE, SERVICE.state(inputs, "web"), inputs)
    assert after_update["taskSpec"]["containerSpec"]["image"] == "nginx:1.28.0-alpine"
    assert changed_paths(SERVICE, after_update, inputs) == {"taskSpec.containerSpec.image": False}


# ----------------------------------------------------------------------------- replacements


def test_a_service_name_change_replaces_it_deleting_first():
    """name is Required+ForceNew (resource_docker_service.go); an explicitly set autonamed field makes
    the bridge delete first (pkg/tfbridge/schema.go nameRequiresDeleteBeforeReplace)."""
    inputs = service()
    state = updated(SERVICE, {}, inputs)
    renamed = service({"name": "shop-web2"})
    assert changed_paths(SERVICE, state, renamed) == {"name": True}
    assert SERVICE.delete_before_replace is not None and SERVICE.delete_before_replace(renamed)


def test_an_auth_change_replaces_the_service():
    """auth and all its fields are ForceNew; Read never sets auth (resource_docker_service.go)."""
    auth = {"serverAddress": "ghcr.io", "username": "ci", "password": "one"}
    inputs = service({"auth": auth})
    state = updated(SERVICE, {}, inputs)
    assert changed_paths(SERVICE, state, inputs) == {}
    rotated = service({"auth": {**auth, "password": "two"}})
    assert changed_paths(SERVICE, state, rotated) == {"auth.password": True}


def test_any_change_to_a_network_attachment_replaces_the_service():
    """networks_advanced is a TypeSet whose id, aliases and driver_opts are ForceNew: a changed element
    is removed and added (resource_docker_service.go); the order is no difference."""
    nets = [{"id": "net-a", "aliases": ["db", "postgres"]}, {"id": "net-b"}]
    inputs = service({"taskSpec.networksAdvanceds": nets})
    state = updated(SERVICE, {}, inputs)
    reordered = service(
        {"taskSpec.networksAdvanceds": [{"id": "net-b"}, {"id": "net-a", "aliases": ["postgres", "db"]}]}
    )
    assert changed_paths(SERVICE, state, reordered) == {}
    alias = service({"taskSpec.networksAdvanceds": [{"id": "net-a", "aliases": ["db"]}, {"id": "net-b"}]})
    assert changed_paths(SERVICE, state, alias) == {"taskSpec.networksAdvanceds": True}
    network_replaced = service(
        {"taskSpec.networksAdvanceds": [{"id": "net-a2", "aliases": ["db", "postgres"]}, {"id": "net-b"}]}
    )
    assert changed_paths(SERVICE, state, network_replaced) == {"taskSpec.networksAdvanceds": True}


def test_container_labels_and_hosts_replace_the_service():
    """container_spec.labels (labelSchema) and hosts are ForceNew sets (resource_docker_service.go)."""
    inputs = service({"taskSpec.containerSpec.labels": [{"label": "a", "value": "1"}]})
    state = updated(SERVICE, {}, inputs)
    relabelled = service({"taskSpec.containerSpec.labels": [{"label": "a", "value": "2"}]})
    assert changed_paths(SERVICE, state, relabelled) == {"taskSpec.containerSpec.labels": True}


# ----------------------------------------------------------------------------- values Read fills in


def test_restart_policy_fields_left_unset_are_read_back_and_differ():
    """createRestartPolicy sends Delay and Window whenever the block is set (zero when unset) and
    the daemon turns an empty condition into ``any`` (moby daemon/cluster/convert/service.go
    restartPolicyToGRPC); none of them is Computed. The whole block left unset is Optional+Computed."""
    partial = service({"taskSpec.restartPolicy": {"condition": "none"}})
    state = updated(SERVICE, {}, partial)
    assert state["taskSpec"]["restartPolicy"] == {"condition": "none", "delay": "0s", "maxAttempts": 0, "window": "0s"}
    assert changed_paths(SERVICE, state, partial) == {
        "taskSpec.restartPolicy.delay": False,
        "taskSpec.restartPolicy.window": False,
    }
    no_condition = service({"taskSpec.restartPolicy": {"delay": "5s", "window": "0s"}})
    assert changed_paths(SERVICE, updated(SERVICE, {}, no_condition), no_condition) == {
        "taskSpec.restartPolicy.condition": False
    }
    unset = service(drop=("taskSpec.restartPolicy",))
    assert changed_paths(SERVICE, updated(SERVICE, {}, unset), unset) == {}


def test_blocks_read_fills_in_are_no_diff():
    """Optional+Computed (healthcheck, dns_config, init, resources, placement, runtime, force_update,
    endpoint_spec, mode) or schema defaults (isolation, healthcheck durations): what
    createContainerSpec always sends and flattenContainerSpec reads back is never a difference."""
    bare = {"name": "bare", "taskSpec": {"containerSpec": {"image": "nginx:1"}}}
    state = updated(SERVICE, {}, bare)
    container = state["taskSpec"]["containerSpec"]
    assert container["healthcheck"] == {"interval": "0s", "timeout": "0s", "startPeriod": "0s", "retries": 0}
    assert (container["isolation"], container["init"], container["stopGracePeriod"]) == ("default", False, "0s")
    assert state["taskSpec"]["runtime"] == "container"
    assert state["mode"] == {"replicated": {"replicas": 1}, "global": False}
    assert state["endpointSpec"] == {"mode": "vip", "ports": []}
    assert changed_paths(SERVICE, state, bare) == {}
    no_durations = service({"taskSpec.containerSpec.healthcheck": {"tests": ["NONE"]}})
    assert changed_paths(SERVICE, updated(SERVICE, {}, no_durations), no_durations) == {}


def test_secret_and_config_file_defaults_and_order_are_no_diff():
    """secrets/configs are TypeSets whose file_uid/file_gid default to "0" and file_mode to 0o444:
    createContainerSpec sends them, flattenServiceSecrets reads them back, the config reader fills
    the same defaults into the planned set (resource_docker_service.go)."""
    refs = [
        {"secretId": "s1", "secretName": "db-1", "fileName": "/run/secrets/db"},
        {"secretId": "s2", "fileName": "/x"},
    ]
    inputs = service({"taskSpec.containerSpec.secrets": refs})
    state = updated(SERVICE, {}, inputs)
    assert state["taskSpec"]["containerSpec"]["secrets"][0] == {
        "secretId": "s1",
        "secretName": "db-1",
        "fileName": "/run/secrets/db",
        "fileUid": "0",
        "fileGid": "0",
        "fileMode": 0o444,
    }
    assert changed_paths(SERVICE, state, service({"taskSpec.containerSpec.secrets": refs[::-1]})) == {}
    rotated = service({"taskSpec.containerSpec.secrets": [{**refs[0], "secretId": "s1b"}, refs[1]]})
    assert changed_paths(SERVICE, state, rotated) == {"taskSpec.containerSpec.secrets": False}


def test_mounts_are_a_set_with_the_bind_propagation_default():
    """mounts is a TypeSet; bind_options.propagation defaults to rprivate (resource_docker_service.go);
    flattenServiceMounts reads source, type and read_only back always, tmpfs mode as Perm()."""
    mounts = [
        {"type": "tmpfs", "target": "/tmp", "tmpfsOptions": {"sizeBytes": 16777216}},
        {"type": "bind", "source": "/srv", "target": "/srv", "readOnly": True, "bindOptions": {}},
    ]
    inputs = service({"taskSpec.containerSpec.mounts": mounts})
    state = updated(SERVICE, {}, inputs)
    assert state["taskSpec"]["containerSpec"]["mounts"][1]["bindOptions"] == {"propagation": "rprivate"}
    assert changed_paths(SERVICE, state, service({"taskSpec.containerSpec.mounts": mounts[::-1]})) == {}


def test_an_ingress_port_without_a_published_port_gets_one_without_a_diff():
    """flattenServiceEndpoint reads service.Endpoint: the swarm allocator (swarmkit portallocator.go)
    publishes an ingress port from 30000 up; published_port is Optional+Computed, protocol and
    publish_mode have defaults."""
    inputs = service({"endpointSpec": {"mode": "vip", "ports": [{"targetPort": 80}]}})
    state = updated(SERVICE, {}, inputs)
    assert state["endpointSpec"]["ports"] == [
        {"name": "", "protocol": "tcp", "targetPort": 80, "publishedPort": 30000, "publishMode": "ingress"}
    ]
    assert changed_paths(SERVICE, state, inputs) == {}


def test_ignore_changes_on_mode_hides_the_replicas_a_scheduler_wrote():
    """swarm-cronjob v1.14.0 internal/worker/worker.go sets replicas to its label's value and
    TaskTemplate.ForceUpdate to the version index; a refresh reads both back. ``replicas`` is not
    Computed, so only ignore_changes hides it (bridge: sdk-v2 processIgnoreChanges drops the diff,
    the engine's processIgnoreChanges puts the old input back)."""
    job = service({"mode": {"replicated": {"replicas": 0}}})
    refreshed = updated(SERVICE, {}, job)
    refreshed["mode"]["replicated"]["replicas"] = 1
    refreshed["taskSpec"]["forceUpdate"] = 4242
    assert changed_paths(SERVICE, refreshed, job) == {"mode.replicated.replicas": False}
    assert changed_paths(SERVICE, refreshed, job, ignore_changes=("mode", "taskSpec.forceUpdate")) == {}


def test_converge_config_is_not_read_back():
    """resourceDockerServiceReadRefreshFunc never sets converge_config: any duration form is kept."""
    inputs = service({"convergeConfig": {"delay": "5s", "timeout": "600s"}})
    state = updated(SERVICE, {}, inputs)
    assert state["convergeConfig"] == {"delay": "5s", "timeout": "600s"}
    assert changed_paths(SERVICE, state, inputs) == {}
    assert changed_paths(SERVICE, state, service()) == {"convergeConfig": False}


def test_service_labels_are_a_set():
    """labels is a TypeSet hashed by label name (helpers.go hashLabel), Optional+Computed."""
    inputs = service()
    state = updated(SERVICE, {}, inputs)
    assert changed_paths(SERVICE, state, service({"labels": BASE_SERVICE["labels"][::-1]})) == {}
    assert changed_paths(SERVICE, state, service(drop=("labels",))) == {}


def test_a_credential_spec_registry_is_read_back_as_the_file():
    """createContainerSpec assigns ``registry`` to CredentialSpec.File (a bug upstream); flattenPrivileges."""
    inputs = service({"taskSpec.containerSpec.privileges": {"credentialSpec": {"registry": "svc-cred"}}})
    state = updated(SERVICE, {}, inputs)
    assert state["taskSpec"]["containerSpec"]["privileges"]["credentialSpec"] == {"file": "svc-cred", "registry": ""}
    assert set(changed_paths(SERVICE, state, inputs)) == {
        "taskSpec.containerSpec.privileges.credentialSpec.file",
        "taskSpec.containerSpec.privileges.credentialSpec.registry",
    }


# ----------------------------------------------------------------------------- secret, config


def test_a_secret_change_replaces_it_creating_first_and_a_named_one_deleting_first():
    """Every docker_secret argument is ForceNew, there is no Update, Read sets only the name
    (resource_docker_secret.go); autonamed, it is created first; named, deleted first
    (nameRequiresDeleteBeforeReplace), which fails while a service uses it."""
    inputs = {"data": "b25l", "labels": [{"label": "keel.role", "value": "app"}]}
    state = docker.SECRET.state(inputs, "db-password")
    assert state["name"] == "db-password-0000000"
    assert changed_paths(docker.SECRET, state, {**inputs, "data": "dHdv"}) == {"data": True}
    assert changed_paths(docker.SECRET, state, {**inputs, "labels": []}) == {"labels": True}
    assert docker.SECRET.delete_before_replace is not None
    assert not docker.SECRET.delete_before_replace(inputs)
    assert docker.SECRET.delete_before_replace({**inputs, "name": "db-password"})


def test_a_config_is_read_back_as_standard_base64():
    """resourceDockerConfigRead stores base64.StdEncoding.EncodeToString of the decoded data: a
    non-canonical encoding (stray trailing bits) is a perpetual replacement (data is ForceNew)."""
    canonical = {"data": "QQ=="}
    assert changed_paths(docker.CONFIG, docker.CONFIG.state(canonical, "c"), canonical) == {}
    sloppy = {"data": "QR=="}
    assert changed_paths(docker.CONFIG, docker.CONFIG.state(sloppy, "c"), sloppy) == {"data": True}


# ----------------------------------------------------------------------------- volume, network


def test_a_named_volume_is_replaced_deleting_first_on_any_label_or_option_change():
    """docker_volume name, labels, driver and driver_opts are ForceNew (resource_docker_volume.go);
    driver is Optional+Computed (``local``); mountpoint is an output."""
    inputs = {"name": "shop-db-data", "labels": [{"label": "keel.store", "value": "db"}]}
    state = docker.VOLUME.state(inputs, "db-data")
    assert (state["driver"], state["mountpoint"]) == ("local", "/var/lib/docker/volumes/shop-db-data/_data")
    assert changed_paths(docker.VOLUME, state, inputs) == {}
    relabelled = {**inputs, "labels": [{"label": "keel.store", "value": "pg"}]}
    assert changed_paths(docker.VOLUME, state, relabelled) == {"labels": True}
    assert changed_paths(docker.VOLUME, state, {**inputs, "driverOpts": {"type": "none"}}) == {"driverOpts.type": True}
    assert docker.VOLUME.delete_before_replace is not None and docker.VOLUME.delete_before_replace(inputs)


def test_a_network_read_back_fills_options_and_ipam_without_a_diff_and_any_change_replaces_it():
    """resourceDockerNetworkReadRefreshFunc stores the daemon's options (the overlay VXLAN id) and IPAM
    config, both Optional+Computed; every argument is ForceNew and there is no Update
    (resource_docker_network.go)."""
    inputs = {"name": "prod-internal", "driver": "overlay", "internal": True, "attachable": True}
    state = docker.NETWORK.state(inputs, "internal")
    assert docker.OVERLAY_VXLAN_OPTION in state["options"]
    assert state["ipamConfigs"] and state["scope"] == "swarm"
    assert changed_paths(docker.NETWORK, state, inputs) == {}
    labelled = {**inputs, "labels": [{"label": "keel.managed", "value": "true"}]}
    assert changed_paths(docker.NETWORK, state, labelled) == {"labels": True}
    assert changed_paths(docker.NETWORK, state, {**inputs, "attachable": False}) == {"attachable": True}
    assert docker.NETWORK.delete_before_replace is not None and docker.NETWORK.delete_before_replace(inputs)


# ----------------------------------------------------------------------------- image


def test_any_change_to_an_image_build_replaces_the_image_and_keep_locally_updates():
    """build is a TypeSet (MaxItems 1) whose element holds the ForceNew context, so any change to it
    replaces; nothing hashes the context's files (resource_docker_image_funcs.go); keep_locally is
    a plain Optional argument (resource_docker_image.go)."""
    build = {"context": "render/templates/backup/image", "dockerfile": "Dockerfile", "buildArgs": {"A": "1"}}
    inputs = {"name": "shop-backup:f6b462617727", "build": build, "keepLocally": True}
    state = docker.REMOTE_IMAGE.state(inputs, "backup-image")
    assert (state["build"]["remove"], state["repoDigest"]) == (True, "")
    assert changed_paths(docker.REMOTE_IMAGE, state, inputs) == {}
    rebuilt = {**inputs, "build": {**build, "buildArgs": {"A": "2"}}}
    assert changed_paths(docker.REMOTE_IMAGE, state, rebuilt) == {"build.buildArgs.A": True}
    assert changed_paths(docker.REMOTE_IMAGE, state, {**inputs, "keepLocally": False}) == {"keepLocally": False}


def test_a_pulled_image_reports_its_repo_digest():
    """determineRepoDigest (data_source_docker_image.go): the image's RepoDigests entry."""
    state = docker.REMOTE_IMAGE.state({"name": "nginx:1.28.0-alpine"}, "nginx")
    assert state["repoDigest"].startswith("nginx@sha256:")


# ----------------------------------------------------------------------------- against the SDK


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_the_registry_image_invoke_answers_the_data_source_outputs():
    """data_source_docker_registry_image.go: name, sha256_digest, insecure_skip_verify, and the id."""
    answer = docker.CALLS["docker:index/getRegistryImage:getRegistryImage"]({"name": "nginx:1.28.0-alpine"})
    fields = set(inspect.signature(pulumi_docker.GetRegistryImageResult.__init__).parameters) - {"__self__"}
    assert {_snake(key) for key in answer} == fields
    assert answer["sha256Digest"] == answer["id"]


@pytest.mark.parametrize(
    ("model", "cls"),
    [
        (docker.VOLUME, pulumi_docker.Volume),
        (docker.NETWORK, pulumi_docker.Network),
        (docker.REMOTE_IMAGE, pulumi_docker.RemoteImage),
    ],
)
def test_output_names_are_properties_of_the_sdk_resource(model, cls):
    assert {_snake(name) for name in model.output_names} <= set(dir(cls))


def _sdk_property_names() -> set[str]:
    package = Path(pulumi_docker.__file__).parent
    names = {"global"}
    for source in package.glob("*.py"):
        text = source.read_text()
        names |= set(re.findall(r'@pulumi\.getter\(name="(\w+)"\)', text))
        names |= set(re.findall(r"@pulumi\.getter\s*\n\s*def (\w+)\(", text))
    return names


def test_every_rule_names_properties_the_sdk_knows():
    """A misspelt rule path would never match what the program sends."""
    known = _sdk_property_names()
    for model in docker.MODELS.values():
        for rule in model.rules:
            unknown = [part for part in rule.pattern if part != "*" and part not in known]
            assert not unknown, (model.type, rule.path)


# ----------------------------------------------------------------------------- coverage of the program

CONFIGS = [(stack, None) for stack in ("dev", "staging", "prod")] + [
    (path.stem.split(".", 1)[1], path) for path in sorted((ROOT / "examples").glob("*/Pulumi.*.yaml"))
]


@pytest.mark.parametrize(("stack", "config_file"), CONFIGS, ids=[stack for stack, _ in CONFIGS])
def test_every_docker_property_the_program_sends_is_classified(stack, config_file):
    """Each path the program sends to a docker resource is in docker.SENT_PATHS (from the provider's
    Read), the model has a read rule for each one Read stores in another form (and the program
    sends that form), an unordered rule for each one in a set, and keeps the others as sent."""
    run = stack_run(stack, config_file)
    assert run.error is None, run.error
    assert docker.coverage_problems(run.resources) == []


def test_the_coverage_check_catches_an_unclassified_or_misformatted_property():
    class Sent:
        type = docker.SERVICE_TYPE
        name = "web"
        inputs = service({"taskSpec.containerSpec.dir": "/srv", "taskSpec.containerSpec.stopGracePeriod": "60s"})

    problems = docker.coverage_problems([Sent()])
    assert any("dir: not classified" in problem for problem in problems)
    assert any("stopGracePeriod: sent as '60s', read back as '1m'" in problem for problem in problems)
