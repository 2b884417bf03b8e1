"""Pure functions from configuration to the text of files (cloud-init, nginx.conf, ...).

Nothing here touches Pulumi or the network; every function is tested on its own, with
golden files and with the real tool that consumes its output.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.cache
def environment(directory: Path) -> jinja2.Environment:
    """The one way templates are rendered here, for the templates of ``directory`` (this package's,
    or a store kind's own: stores/<kind>/templates)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
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
