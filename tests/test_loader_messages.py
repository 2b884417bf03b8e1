"""Every message the loader (config/loader.py) and the YAML reader (config/yamlfile.py) can give,
each from the input that causes it: exact text, key path first, nothing registered.

What is read here may come from anyone: a stack file from a pull request, a topology file, keys
in a namespace nothing reads. None of these messages quotes a file's content.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, loader, yamlfile
from config.models import SECTIONS
from tests.helpers import run_with
from tools import mockrun

SECTION_LIST = ", ".join(SECTIONS)
LOCAL_HOST = json.dumps({"provider": "local"})


def assert_fails_cleanly(run: mockrun.Run, expected: str) -> None:
    assert isinstance(run.error, ConfigError), f"expected a ConfigError, got {run.error!r}"
    assert str(run.error) == expected
    assert run.resources == [], f"registered before failing: {[r.urn for r in run.resources]}"


# ----------------------------------------------------------------------------- namespaces and sections


def test_a_misspelt_namespace_is_named_with_the_key_it_was_meant_to_be():
    run = mockrun.run("prod", overrides={"keell:observability": {"enabled": False}})
    assert_fails_cleanly(
        run,
        'keell:observability: "keell" is not a namespace this program reads; did you mean keel:observability?',
    )


def test_a_foreign_namespace_is_named_with_the_namespaces_that_are_read():
    run = mockrun.run("dev", overrides={"aws:region": "eu-central-1"})
    assert_fails_cleanly(
        run,
        'aws:region: "aws" is not a namespace this program reads; expected keel:<section> or a provider\'s key '
        "(cloudflare:, command:, docker:, hcloud:, pulumi:, random:, tls:)",
    )


def test_a_key_without_namespace_is_refused():
    assert loader.namespace_problems("keel", ["keel:host", "hcloud:token", "host"]) == [
        "host: is not a namespaced key; expected keel:<section>"
    ]


def test_a_misspelt_section_is_named_before_its_follow_on_errors():
    # Without the check, `services` would be empty and every route would point at nothing.
    run = run_with("dev", {"keel:servics": {"web": {"replicas": 2}}})
    assert_fails_cleanly(run, "servics: is not a config section; did you mean services?")


def test_an_unknown_section_holding_a_mapping_is_named_before_validation():
    run = run_with("dev", {"keel:frontend": {"image": "nginx:1.28.0"}, "keel:services": {"web": {"port": 0}}})
    assert_fails_cleanly(run, f"frontend: is not a config section; expected one of {SECTION_LIST}, base")


def test_a_secret_named_close_to_a_section_is_judged_as_a_secret():
    run = mockrun.run("dev", overrides={"keel:service": "s3cret"}, secret_keys=["keel:service"])
    assert_fails_cleanly(
        run,
        f"service: is not a known key; expected one of {SECTION_LIST}, base, or a secret that the config names",
    )


def test_a_misspelt_secret_is_named_with_the_secret_it_was_meant_to_be():
    run = mockrun.run("prod", overrides={"keel:jwt_secert": "x" * 40}, secret_keys=["keel:jwt_secert"])
    assert_fails_cleanly(run, "jwt_secert: is not a known key; did you mean jwt_secret?")


# ----------------------------------------------------------------------------- raw values


def test_a_section_that_is_not_json_is_refused():
    run = mockrun.run("dev", overrides={"keel:host": "provider=local"})
    assert_fails_cleanly(run, 'host: found "provider=local"; expected a mapping of keys to values')


def test_json_nested_past_the_parser_is_refused_without_a_traceback():
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ConfigError) as caught:
        loader.parse({"host": LOCAL_HOST, "proxy": text})
    assert str(caught.value) == "proxy: nests more than 32 levels deep; expected a stack config"


def test_values_nested_deeper_than_any_stack_are_refused():
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ConfigError) as caught:
        loader.parse({"host": LOCAL_HOST, "proxy": json.dumps({"routes": deep})})
    path = "/".join(["proxy", "routes", *["0"] * 30])
    assert str(caught.value) == f"{path}: nests more than 32 levels deep; expected a stack config"


def test_a_number_of_thousands_of_digits_is_refused():
    with pytest.raises(ConfigError) as caught:
        loader.parse({"host": '{"provider": "local", "memory_mib": 1' + "0" * 5000 + "}"})
    assert str(caught.value) == "host: holds a number of over 4300 digits; expected a stack config"


# ----------------------------------------------------------------------------- secrets and credentials


def test_a_secret_named_like_a_section_is_refused():
    run = run_with("dev", {"keel:services": {"api": {"secrets": {"PROXY_TOKEN": "proxy"}}}})
    assert_fails_cleanly(
        run, 'services/api/secrets/PROXY_TOKEN: the secret name "proxy" is a config section name; choose another name'
    )


def test_an_empty_secret_is_refused_without_showing_anything():
    run = mockrun.run("prod", overrides={"keel:jwt_secret": ""}, secret_keys=["keel:jwt_secret"])
    assert_fails_cleanly(
        run,
        "jwt_secret: is empty but services/api/secrets/JWT_SECRET needs a value; "
        "run: pulumi config set --secret jwt_secret <value>",
    )


def test_a_missing_provider_token_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    values, _ = mockrun.read_config_file(mockrun.stack_file("prod"))
    extra, keys = mockrun.placeholder_secrets(values)
    extra.pop("cloudflare:apiToken")
    run = mockrun.run("prod", fill_secrets=False, overrides=extra, secret_keys=[k for k in keys if k in extra])
    assert_fails_cleanly(
        run,
        "cloudflare:apiToken: is required but missing; run: pulumi config set --secret cloudflare:apiToken <token> "
        "(or export CLOUDFLARE_API_TOKEN)",
    )


def test_a_literal_credential_in_env_warns_once_and_says_how_to_make_it_a_secret():
    run = run_with("prod", {"keel:services": {"api": {"env": {"STRIPE_API_KEY": "sk_live_123"}}}})
    assert run.error is None, run.error
    warnings = [line for line in run.logs if line.startswith("warning: ")]
    assert warnings == [
        "warning: services/api/env/STRIPE_API_KEY: a literal value under a name that looks like a credential is "
        "stored in plaintext in the stack and the service spec; make it a secret: pulumi config set --secret "
        "stripe_api_key <value>, then move it to services/api/secrets/STRIPE_API_KEY: stripe_api_key"
    ]


def test_names_that_merely_contain_a_credential_word_do_not_warn():
    run = run_with("prod", {"keel:services": {"api": {"env": {"KEYCLOAK_URL": "https://id.example.com"}}}})
    assert run.error is None, run.error
    assert [line for line in run.logs if line.startswith("warning: ")] == []


# ----------------------------------------------------------------------------- keel:base


def parse_with_base(directory: Path, base: str) -> str:
    with pytest.raises(ConfigError) as caught:
        loader.parse({"base": base, "host": LOCAL_HOST}, base_dir=directory)
    return str(caught.value)


def test_a_topology_that_is_not_yaml_is_refused(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("services: {}\n")
    assert parse_with_base(tmp_path, "notes.txt") == (
        'base: found "notes.txt", which is not a .yaml or .yml file; expected a topology YAML path relative to '
        "the project directory, such as topology/webapp.yaml"
    )


def test_a_symbolic_link_out_of_the_project_is_refused_without_reading_it(tmp_path: Path):
    project = tmp_path / "project"
    (project / "topology").mkdir(parents=True)
    secret = tmp_path / "credentials.yaml"
    secret.write_text("aws_secret_access_key: do-not-print-me\n")
    os.symlink(secret, project / "topology" / "shared.yaml")
    message = parse_with_base(project, "topology/shared.yaml")
    assert message == (
        'base: found "topology/shared.yaml", which leads out of the project directory (a symbolic link); '
        "expected a topology YAML path relative to the project directory, such as topology/webapp.yaml"
    )
    assert "do-not-print-me" not in message and "aws_secret" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- services\n- proxy\n", "base (t.yaml): holds a list; expected a mapping of config sections"),
        ("just text\n", "base (t.yaml): holds a single value; expected a mapping of config sections"),
        ("", "base (t.yaml): holds nothing; expected a mapping of config sections"),
        ("servces: {}\n", "base (t.yaml)/servces: is not a config section; did you mean services?"),
        ("password: hunter2\n", f"base (t.yaml)/password: is not a config section; expected one of {SECTION_LIST}"),
        (
            "services: {a: 1}\n\tbad: [\n",
            "base (t.yaml): line 2, column 1: found character that cannot start any token",
        ),
    ],
    ids=["list", "scalar", "empty", "misspelt section", "unknown section", "not YAML"],
)
def test_a_topology_file_that_is_no_config_is_refused_without_quoting_it(tmp_path: Path, text: str, expected: str):
    (tmp_path / "t.yaml").write_text(text)
    message = parse_with_base(tmp_path, "t.yaml")
    assert message == expected
    assert "hunter2" not in message


def test_an_unreadable_topology_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "t.yaml").write_text("services: {}\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    assert parse_with_base(tmp_path, "t.yaml") == "base (t.yaml): cannot be read (Permission denied)"


def test_a_topology_file_over_a_megabyte_is_refused_unread(tmp_path: Path):
    (tmp_path / "t.yaml").write_text("# " + "x" * yamlfile.MAX_BYTES + "\n")
    assert (
        parse_with_base(tmp_path, "t.yaml")
        == f"base (t.yaml): is {yamlfile.MAX_BYTES + 1} bytes long; expected at most {yamlfile.MAX_BYTES}"
    )


def test_a_topology_file_reaches_the_program_through_the_mock_runtime_too():
    run = run_with("prod", {"keel:base": "topology/missing.yml"})
    assert_fails_cleanly(
        run,
        'base: found "topology/missing.yml", which is not a file; expected a topology YAML path relative to the '
        "project directory, such as topology/webapp.yaml",
    )


# ----------------------------------------------------------------------------- the YAML reader

UNREADABLE = "holds a value that cannot be read (a number of over 4300 digits or an impossible date)"
TWICE = "twice in one mapping; expected each key once"
BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("text", "aliases", "expected"),
    [
        ("a: 1\nb: 2\na: 3\n", False, 'line 3, column 1: defines the key "a" ' + TWICE),
        (
            "a: &x 1\nb: 2\n", False,
            "line 1, column 4: defines an anchor (&name); anchors and aliases are not supported here",
        ),
        ("a: 1\nb: *x\n", False, "line 2, column 4: uses an alias (*name); anchors and aliases are not supported here"),
        ("a: !!python/object:os.system x\n", False, "line 1, column 4: uses an explicit tag (!...); plain values only"),
        ("a: !!binary aGVsbG8=\n", False, "line 1, column 4: uses an explicit tag (!...); plain values only"),
        ("a:\n  <<: {b: 1}\n", False, "line 2, column 3: uses a merge key (<<); write the keys out"),
        ("? [a]\n: 1\n", False, "line 1, column 3: uses a list, a mapping or an alias as a key; expected a name"),
        ("a: 1\n---\nb: 2\n", False, "line 2, column 1: holds more than one YAML document; expected one"),
        ("[" * 65 + "]" * 65, False, "line 1, column 65: opens more than 64 nested [ or {"),
        (
            "".join("  " * i + f"k{i}:\n" for i in range(70)) + "  " * 70 + "v\n",
            False,
            "line 65, column 129: nests more than 64 levels deep",
        ),
        ("\n".join(f"k{i}: 1" for i in range(25_001)), False, "line 25000, column 9: holds more than 50000 values"),
        (BOMB, True, "line 6, column 8: expands to more than 100000 values through its aliases"),
        ("a: " + "1" * 5000 + "\n", False, UNREADABLE),
        ("a: 2025-02-30\n", False, UNREADABLE),
        ("a: [1, 2\nb: 3\n", False, "line 2, column 2: did not find expected ',' or ']'"),
        ("a: b\x07c\n", False, "holds a control character YAML does not allow (U+0007, character 5)"),
    ],
    ids=[
        "duplicate key", "anchor", "alias", "python tag", "binary tag", "merge key", "list as key",
        "two documents", "deep flow", "deep block", "too many values", "alias bomb", "huge number",
        "impossible date", "syntax error", "control character",
    ],
)  # fmt: skip
def test_yaml_reader_refuses_with_a_position_and_a_fixed_description(text: str, aliases: bool, expected: str):
    with pytest.raises(yamlfile.YamlFileError) as caught:
        yamlfile.load(text, allow_aliases=aliases)
    assert str(caught.value) == expected


def test_yaml_reader_refuses_bytes_that_are_not_utf8_or_too_many():
    with pytest.raises(yamlfile.YamlFileError) as caught:
        yamlfile.load(b"a: \xff\n")
    assert str(caught.value) == "is not UTF-8 text (byte 4)"
    with pytest.raises(yamlfile.YamlFileError) as caught:
        yamlfile.load("a" * (yamlfile.MAX_BYTES + 1))
    assert str(caught.value) == f"is longer than {yamlfile.MAX_BYTES} bytes"
    with pytest.raises(yamlfile.YamlFileError) as caught:
        yamlfile.load("a: b\ud800\n")
    assert str(caught.value) == "is not valid Unicode (a lone surrogate, character 5)"


def test_yaml_reader_reads_plain_documents_and_bounded_aliases_as_data():
    assert yamlfile.load("a: 1\nb: [x, 'y']\nc: {d: null}\n") == {"a": 1, "b": ["x", "y"], "c": {"d": None}}
    assert yamlfile.load("a: &x [1, 2]\nb: *x\n", allow_aliases=True) == {"a": [1, 2], "b": [1, 2]}


# ----------------------------------------------------------------------------- stack files in the mock runtime


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "config:\n  keel:host: {provider: local}\n  keel:host: {provider: hcloud}\n",
            'Pulumi.x.yaml: line 3, column 3: defines the key "keel:host" twice in one mapping; expected each key once',
        ),
        (
            BOMB.replace("\n", "\n  ").join(["config:\n  ", ""]),
            "Pulumi.x.yaml: line 7, column 10: expands to more than 100000 values through its aliases",
        ),
        ("- config\n", "Pulumi.x.yaml: expected a mapping with a config: mapping"),
    ],
    ids=["duplicate key", "alias bomb", "not a mapping"],
)
def test_mock_runtime_refuses_stack_files_pulumi_would_refuse(tmp_path: Path, text: str, expected: str):
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(text)
    run = mockrun.run("x", config_file=path)
    assert str(run.error) == expected
    assert run.resources == []


# ----------------------------------------------------------------------------- every message is tested

MESSAGE_SOURCES = ("config/loader.py", "config/yamlfile.py")
_MESSAGE_CALLS = {"append", "at", "ConfigError", "YamlFileError"}
# PyYAML's errors carry a mark (MarkedYAMLError) or are ReaderErrors, both handled with a
# message of their own; this one catches any other YAMLError a future PyYAML may add.
UNREACHED = {"is not valid YAML"}


def _literal_parts(node: ast.AST) -> list[str]:
    """The fixed text of a string expression: a constant, an f-string's literal parts, either
    branch of a conditional."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [part.value for part in node.values if isinstance(part, ast.Constant) and isinstance(part.value, str)]
    if isinstance(node, ast.IfExp):
        return _literal_parts(node.body) + _literal_parts(node.orelse)
    return []


def _messages(source: Path) -> list[tuple[int, list[str]]]:
    """(line, fixed parts) of every message given to problems.append, ConfigError(.at) or YamlFileError."""
    found = []
    for node in ast.walk(ast.parse(source.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name not in _MESSAGE_CALLS:
            continue
        for arg in node.args[1:] if name == "at" else node.args[:1]:
            # Parts of a few characters ("found ", "; ") say nothing about which message it is.
            parts = [part for part in _literal_parts(arg) if len(part.strip(" ;:,()")) >= 6]
            if parts:
                found.append((node.lineno, parts))
    return found


def test_every_message_of_the_loader_and_the_yaml_reader_is_asserted_by_a_test():
    root = Path(__file__).resolve().parent.parent
    texts = []
    for path in sorted((root / "tests").glob("**/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Constant, ast.JoinedStr)):
                texts += _literal_parts(node)
    tested = "\x00".join(texts)
    untested = []
    counted = 0
    for name in MESSAGE_SOURCES:
        messages = _messages(root / name)
        assert len(messages) >= 10, f"{name}: the message search found {len(messages)}"
        for line, parts in messages:
            counted += 1
            if set(parts) <= UNREACHED:
                continue
            untested += [f"{name}:{line}: {part!r}" for part in parts if part not in tested]
    assert not untested, "messages no test asserts:\n" + "\n".join(untested)
    assert counted >= 40
