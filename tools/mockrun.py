"""Run the real program (`__main__.py`) under Pulumi's mock runtime and record what it declares.

Used by the tests (graph tests per stack and per example) and by `tools/render.py` (offline
rendering). Nothing here needs the Pulumi CLI, a cloud account or Docker: the mock monitor
answers every registration with plausible provider outputs (real ed25519 keys, numeric
Hetzner ids, documentation-range IPs, Cloudflare's published ranges).
"""

from __future__ import annotations

import base64
import json
import logging
import runpy
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from components import collector
from config import yamlfile
from tools import readback

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "keel"
SECRET_SIG = rpc._special_sig_key
SECRET_VALUE = rpc._special_secret_sig


@dataclass
class Registered:
    """One resource the program registered, with its inputs and options."""

    urn: str
    type: str
    name: str
    custom: bool
    inputs: dict[str, Any]
    """Inputs with secrets unwrapped (what the provider would receive)."""
    raw_inputs: dict[str, Any]
    """Inputs as sent to the engine, secrets still wrapped in their signature objects."""
    parent: str
    provider: str
    protect: bool
    retain_on_delete: bool
    ignore_changes: list[str]
    depends_on: list[str]
    delete_before_replace: bool
    id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    """The URNs the resource was known by before (its ``aliases`` option)."""
    secret_outputs: list[str] = field(default_factory=list)
    """The outputs its SDK registers as secret (`additional_secret_outputs`: private keys, passwords)."""

    def secret_paths(self) -> set[str]:
        """Property paths (as tools.readback.show_path prints them) whose values are Pulumi secrets."""
        return set(_secret_leaves(self.raw_inputs, ""))

    def secret_output_values(self) -> list[str]:
        """The text of its secret outputs, so a render can redact them wherever they land."""
        return [value for name in self.secret_outputs if isinstance(value := self.outputs.get(name), str)]

    def plaintext_strings(self) -> Iterator[tuple[str, str]]:
        """Every string leaf of the inputs that is not inside a Pulumi secret: (path, value)."""
        yield from _plain_leaves(self.raw_inputs, self.name)


def _unwrap_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            return _unwrap_secrets(value.get("value"))
        return {key: _unwrap_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(item) for item in value]
    return value


def _secret_leaves(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            yield path
            return
        for key, item in value.items():
            yield from _secret_leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_leaves(item, f"{path}[{index}]")


def _plain_leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            return
        for key, item in value.items():
            yield from _plain_leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _plain_leaves(item, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, value


@dataclass
class Run:
    """The outcome of one program run: resources, stack outputs, or the error it raised."""

    stack: str
    resources: list[Registered]
    outputs: dict[str, Any]
    error: BaseException | None
    logs: list[str]
    secret_values: list[str] = field(default_factory=list)
    """Every secret the run handled as a whole value: config secrets and the providers' secret outputs
    (the keys and passwords the read-back models made)."""

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Registered:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            names = [r.name for r in self.of_type(type_)]
            raise AssertionError(f"expected one {type_} named {name!r}; registered: {names}")
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        for r in self.resources:
            if r.urn == urn:
                return r
        raise KeyError(urn)

    def types(self) -> set[str]:
        return {r.type for r in self.resources}


class ProgramMocks(pulumi_mocks.Mocks):
    """Provider outputs for every resource type the program uses, from the read-back model.

    A resource the ``prior`` state holds answers as the next preview would see it: unchanged, its
    stored state and id; updated, what its provider stores for the new inputs, same id; replaced,
    a new id and new generated names (a preview shows those as unknown: either way, what depends
    on them changes too). Anything else is created: what its provider's Create and Read store.
    """

    def __init__(self, prior: Mapping[str, readback.StateEntry] | None = None) -> None:
        self.prior = dict(prior or {})
        self.context: dict[str, Any] = {"built_images": set()}

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        raise NotImplementedError("RecordingMonitor answers registrations with ProgramMocks.answer")

    def answer(
        self, urn: str, typ: str, name: str, raw: dict[str, Any], custom: bool, ignore_changes: tuple[str, ...]
    ) -> tuple[str, dict[str, Any]]:
        """The id and state the provider returns for one registration."""
        if not readback.is_modelled(typ, custom):
            return f"{name}-id", dict(raw)
        model = readback.model(typ)
        inputs = _unwrap_secrets(raw)
        if typ == "docker:index/remoteImage:RemoteImage" and inputs.get("build"):
            self.context["built_images"].add(inputs.get("name"))
        entry = self.prior.get(urn)
        if entry is None:
            return readback.resource_id(typ, name, inputs), model.state(inputs, name, self.context)
        changes = model.diff(entry.state, inputs, ignore_changes)
        if not changes:
            return entry.id, entry.state
        if any(change.replaces for change in changes):
            replacement = f"{name}-replacement"
            return readback.resource_id(typ, replacement, inputs), model.state(inputs, replacement, self.context)
        return entry.id, model.updated_state(entry.state, inputs, name)

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]]]:
        answer = readback.CALLS.get(args.token)
        if answer is None:
            raise readback.UnmodelledResourceError(f"{args.token}: no read-back model of this invoke")
        return answer(dict(args.args)), []


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, also keeping resource options and secret-wrapped inputs."""

    def __init__(self, mocks: ProgramMocks) -> None:
        super().__init__(mocks)
        self.program_mocks = mocks
        self.registered: list[Registered] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method name)
        # The SDK's mock monitor, with the URN and options handed to the answer: registrations
        # arrive on several threads at once, so nothing about one may be kept between calls.
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            return resource_pb2.RegisterResourceResponse(urn=urn)
        _ensure_event_loop()
        resource_id, state = self.program_mocks.answer(
            urn,
            request.type,
            request.name,
            rpc.deserialize_properties(request.object),
            bool(request.custom),
            tuple(request.ignoreChanges),
        )
        self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, resource_id, state)
        response = resource_pb2.RegisterResourceResponse(
            urn=urn, id=resource_id, object=_sync_await(rpc.serialize_properties(state, {}))
        )
        if request.additionalSecretOutputs:
            response = self._mark_secret_outputs(response, list(request.additionalSecretOutputs))
        self.registered.append(
            Registered(
                urn=response.urn,
                type=request.type,
                name=request.name,
                custom=request.custom,
                inputs=_unwrap_secrets(rpc.deserialize_properties(request.object)),
                raw_inputs=json_format.MessageToDict(request.object),
                parent=request.parent,
                provider=request.provider,
                protect=request.protect,
                retain_on_delete=request.retainOnDelete,
                ignore_changes=list(request.ignoreChanges),
                depends_on=list(request.dependencies),
                delete_before_replace=request.deleteBeforeReplace,
                id=response.id,
                outputs=dict(state),
                aliases=[self._alias_urn(alias, request) for alias in request.aliases],
                secret_outputs=list(request.additionalSecretOutputs),
            )
        )
        return response

    def _alias_urn(self, alias: Any, request: Any) -> str:
        """An alias as the URN the engine would look the old state up by."""
        if alias.urn:
            return str(alias.urn)
        spec = alias.spec
        parent = spec.parentUrn if spec.parentUrn else ("" if spec.noParent else request.parent)
        return self.make_urn(parent, spec.type or request.type, spec.name or request.name)

    def _mark_secret_outputs(self, response: Any, names: list[str]) -> Any:
        """Mark outputs secret as the engine does for `additional_secret_outputs` (the SDK mock does not)."""
        state = rpc.deserialize_properties(response.object)
        for name in names:
            if name in state:
                state[name] = {SECRET_SIG: SECRET_VALUE, "value": state[name]}
        response.object.CopyFrom(_sync_await(rpc.serialize_properties(state, {})))
        return response


def stack_file(stack: str) -> Path:
    return ROOT / f"Pulumi.{stack}.yaml"


class StackFileError(Exception):
    """A stack file Pulumi itself would refuse to read (the program never runs)."""


def read_config_file(path: Path) -> tuple[dict[str, str], list[str]]:
    """A Pulumi stack YAML as the language host hands it to the program: key -> string value.

    Values written `{secure: ...}` become placeholders marked secret. Read as Pulumi's own reader
    (go-yaml v3) reads it: a key written twice is an error, and aliases expand only so far.
    """
    try:
        data = yamlfile.load(path.read_bytes(), allow_aliases=True) or {}
    except yamlfile.YamlFileError as error:
        raise StackFileError(f"{path.name}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("config") or {}, dict):
        raise StackFileError(f"{path.name}: expected a mapping with a config: mapping")
    values: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (data.get("config") or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            values[key] = f"placeholder-{key.split(':', 1)[1]}"
            secret_keys.append(key)
        else:
            values[key] = encode_value(value)
    return values, secret_keys


def encode_value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def placeholder_secrets(values: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Placeholder values for every secret the config names, and the provider tokens.

    Lets a stack render and be tested without anyone's real secrets. Returns extra values
    and the keys to mark secret. A config that does not parse gets none (its error shows).
    """
    import config as config_package
    from config import crossref

    raw = {k.split(":", 1)[1]: v for k, v in values.items() if k.startswith(f"{PROJECT}:")}
    try:
        cfg = config_package.parse(raw)
    except config_package.ConfigError:
        return {}, []
    extra: dict[str, str] = {}
    for name in crossref.referenced_secrets(cfg):
        key = f"{PROJECT}:{name}"
        if name in config_package.loader.RESERVED:
            continue  # a secret named like a section: the loader says so; a placeholder would hide it
        if key not in values:
            extra[key] = f"placeholder-secret-{name}-0123456789abcdef0123456789"
    if cfg.host.provider == "hcloud" and "hcloud:token" not in values:
        extra["hcloud:token"] = "placeholder-hcloud-token"
    if cfg.dns is not None and "cloudflare:apiToken" not in values:
        extra["cloudflare:apiToken"] = "placeholder-cloudflare-token"
    return extra, list(extra)


def run(
    stack: str,
    *,
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    fill_secrets: bool = True,
    secret_keys: list[str] | None = None,
    preview: bool = False,
    prior: Mapping[str, readback.StateEntry] | None = None,
) -> Run:
    """Run __main__.py for `stack` under mocks.

    `overrides` replace whole config keys ("keel:host": {...}); `secret_keys` marks extra keys
    secret. With `fill_secrets`, named secrets that are not set get placeholder values. With
    `prior` (tools.readback.state_after_up of an earlier run), the providers answer as the next
    preview against that state would see them.
    """
    try:
        values, secrets = stack_values(
            stack, config_file=config_file, overrides=overrides, fill_secrets=fill_secrets, secret_keys=secret_keys
        )
    except StackFileError as refused:
        return Run(stack=stack, resources=[], outputs={}, error=refused, logs=[])
    return run_values(stack, values, secrets, preview=preview, prior=prior)


def stack_values(
    stack: str,
    *,
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    fill_secrets: bool = True,
    secret_keys: list[str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """The config values and secret keys ``run`` hands the program (its arguments, same meaning);
    StackFileError if the stack file cannot be read."""
    values, secrets = read_config_file(config_file or stack_file(stack))
    for key, value in (overrides or {}).items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = encode_value(value)
    secrets += secret_keys or []
    if fill_secrets:
        extra, extra_secret_keys = placeholder_secrets(values)
        values.update(extra)
        secrets += extra_secret_keys
    return values, secrets


def run_values(
    stack: str,
    values: dict[str, str],
    secrets: list[str],
    *,
    preview: bool = False,
    prior: Mapping[str, readback.StateEntry] | None = None,
) -> Run:
    """Run __main__.py with these config values (``stack_values``), as ``run`` does."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    outputs: dict[str, Any] = {}
    logs: list[str] = []

    async def program() -> None:
        pulumi.runtime.set_all_config(values, secrets)
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        root = get_root_resource()
        exported = getattr(root, "outputs", {})
        resolved = await pulumi.Output.from_input(exported).future()
        outputs.update(resolved or {})

    resources, error = declare(program, stack=stack, preview=preview, logs=logs, prior=prior)
    secret_values = [values[key] for key in secrets if key in values]
    secret_values += [value for resource in resources for value in resource.secret_output_values()]
    return Run(stack=stack, resources=resources, outputs=outputs, error=error, logs=logs, secret_values=secret_values)


def declare(
    program: Callable[[], Awaitable[None]],
    *,
    stack: str = "test",
    preview: bool = False,
    logs: list[str] | None = None,
    prior: Mapping[str, readback.StateEntry] | None = None,
) -> tuple[list[Registered], BaseException | None]:
    """Run `program` (anything that declares resources) under the mock runtime.

    Returns what it registered and the error it raised, if any (the registrations made before
    the error are kept: tests use them to prove nothing was registered).
    """
    monitor = RecordingMonitor(ProgramMocks(prior))
    sink = logs if logs is not None else []
    pulumi_mocks.set_mocks(
        monitor.mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor, logger=_list_logger(sink)
    )
    error: BaseException | None = None
    # The program turns the collector off for its run (components/collector.py).
    with collector.restored():
        try:
            _sync_await(run_pulumi_func(program))
        except Exception as caught:  # noqa: BLE001 (the run's error is part of its result)
            error = caught
    return list(monitor.registered), error


class _ListHandler(logging.Handler):
    """Keeps what the program logs through the mock engine."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__(level=logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"{record.levelname.lower()}: {record.getMessage()}")


def _list_logger(sink: list[str]) -> logging.Logger:
    logger = logging.Logger("keel-mockrun", level=logging.INFO)
    logger.addHandler(_ListHandler(sink))
    return logger


def decode_base64(value: str) -> str:
    return base64.b64decode(value).decode()
