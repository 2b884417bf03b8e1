"""Pure functions from configuration to the text of files (cloud-init, nginx.conf, ...).

Nothing here touches Pulumi or the network; every function is tested on its own, with
golden files and with the real tool that consumes its output.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"

ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


def render_template(name: str, **values: object) -> str:
    return ENVIRONMENT.get_template(name).render(**values)
