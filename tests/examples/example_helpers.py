"""What the example tests share: each example run once under the mock runtime, and readers for
the parts of it the seed documents state figures about (services, nginx.conf, rendered files)."""

from __future__ import annotations

import base64
import json
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from config import parse
from config.models import StackConfig
from render import proxy_runtime
from tests.helpers import stack_run
from tools import mockrun

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES_DIR = ROOT / "examples"
EXAMPLES = ("almeyo", "isntgram", "thrifting-buddy", "mealsync", "spoon", "spoon-cluster")
SERVICE = "docker:index/service:Service"
SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
SECRET = "docker:index/secret:Secret"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
MIB = 1024 * 1024


def config_file(name: str) -> Path:
    return EXAMPLES_DIR / name / f"Pulumi.{name}.yaml"


def config_values(name: str) -> dict[str, Any]:
    """The `config:` mapping of the example's stack file, as YAML values."""
    return dict(yaml.safe_load(config_file(name).read_text())["config"])


def stack_config(name: str) -> StackConfig:
    """The example's validated config, as the program sees it."""
    raw = {
        key.split(":", 1)[1]: value if isinstance(value, str) else json.dumps(value)
        for key, value in config_values(name).items()
        if key.startswith("keel:")
    }
    return parse(raw)


@cache
def example_run(name: str) -> mockrun.Run:
    """The example's program run under mocks (once per test process)."""
    run = stack_run(name, config_file(name))
    assert run.error is None, f"{name}: the program failed under mocks: {run.error}"
    return run


def service(run: mockrun.Run, name: str) -> mockrun.Registered:
    """The docker.Service a component registered as `<name>-service` (apps, stores, the proxy)."""
    return run.one(SERVICE, f"{name}-service")


def container(svc: mockrun.Registered) -> dict[str, Any]:
    return dict(svc.inputs["taskSpec"]["containerSpec"])


def limits(svc: mockrun.Registered) -> dict[str, Any]:
    return dict(svc.inputs["taskSpec"]["resources"]["limits"])


def reservation(svc: mockrun.Registered) -> dict[str, Any]:
    return dict(svc.inputs["taskSpec"]["resources"]["reservation"])


def role(svc: mockrun.Registered) -> str:
    return {item["label"]: item["value"] for item in svc.inputs["labels"]}["keel.role"]


def label(svc: mockrun.Registered, name: str) -> str | None:
    return {item["label"]: item["value"] for item in svc.inputs["labels"]}.get(name)


def secret_text(secret: mockrun.Registered) -> str:
    """The plaintext of a docker.Secret (its data is base64)."""
    return base64.b64decode(secret.inputs["data"]).decode()


def is_pulumi_secret(resource: mockrun.Registered, *path: str) -> bool:
    """Whether the input at `path` reached the engine wrapped as a Pulumi secret."""
    value: Any = resource.raw_inputs
    for key in path:
        value = value[key]
    return isinstance(value, dict) and value.get(mockrun.SECRET_SIG) == mockrun.SECRET_VALUE


def service_config_text(run: mockrun.Run, name: str) -> str:
    return base64.b64decode(run.one(SERVICE_CONFIG, name).inputs["data"]).decode()


def proxy_files(run: mockrun.Run) -> dict[str, str]:
    """The files the ProxyTier writes into the proxy's configuration volume (from the writer's stdin)."""
    writer = run.one("command:remote:Command", "proxy-nginx.conf")
    files = proxy_runtime.read_writer_stdin(writer.inputs["stdin"])
    assert files is not None, f"{writer.urn}: stdin is not the writer's format"
    return files


def nginx_conf(run: mockrun.Run) -> str:
    return proxy_files(run)["nginx.conf"]


def block(text: str, opening: str) -> str:
    """The body of the first `opening {` block in nginx text, up to its matching brace."""
    start = text.index(opening + " {")
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start : index + 1]
    raise AssertionError(f"unbalanced block {opening!r}")


def location(conf: str, path: str) -> str:
    """The `location <path>` block of the HTTPS server (the first server only redirects)."""
    https = conf[conf.index("listen 443 ssl") :]
    return block(https, f"location {path}")


def health(svc: mockrun.Registered) -> dict[str, Any]:
    return dict(container(svc)["healthcheck"])


def probe_url(svc: mockrun.Registered) -> str:
    """The URL an HTTP health probe (swarm.http_probe) calls."""
    words = shlex.split(health(svc)["tests"][-1])
    urls = [word for word in words if word.startswith("http://")]
    assert urls, f"{svc.urn}: no HTTP probe in {health(svc)['tests']}"
    return urls[0]
