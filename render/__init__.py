"""Pure functions from configuration to the text of files (cloud-init, nginx.conf, ...).

Nothing here touches Pulumi or the network; every function is tested on its own, with
golden files and with the real tool that consumes its output.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2
import jinja2.bccache
import yaml

TEMPLATES = Path(__file__).resolve().parent / "templates"


class _CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """Jinja's cache of compiled templates, in a directory of this user's alone (Jinja refuses one
    that is not, tempdir/_jinja2-cache-<uid>), keyed by each template's text: a process that
    renders the stack compiles only the templates that changed since the last one (~40 of them,
    0.1-0.2 s otherwise). A cache that cannot be written is no reason to fail a deploy."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


@functools.cache
def _compiled_templates() -> jinja2.FileSystemBytecodeCache | None:
    try:
        return _CompiledTemplates()
    except (RuntimeError, OSError):  # no private temporary directory: compile in every process
        return None


@functools.cache
def environment(directory: Path) -> jinja2.Environment:
    """The one way templates are rendered here, for the templates of ``directory`` (this package's,
    or a store kind's own: stores/<kind>/templates)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        bytecode_cache=_compiled_templates(),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render_template(name: str, /, **values: object) -> str:
    """A template of render/templates."""
    return render_from(TEMPLATES, name, **values)


def render_from(directory: Path, name: str, /, **values: object) -> str:
    """A template of ``directory`` (a store kind's: stores/<kind>/templates)."""
    return environment(directory).get_template(name).render(**values)


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, with list items indented under their key and multi-line strings as
    literal blocks (|), so the files read like hand-written ones."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value and all(c == "\n" or c.isprintable() for c in value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any, header: str = "") -> str:
    """A YAML file from a data structure. PyYAML quotes every string that needs it, so no value can
    add a key, an item or a document: config values reach YAML only this way, never through a
    template. ``header`` becomes comment lines at the top (it is ours, never a config value)."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=False, width=100)
    return comment + body
