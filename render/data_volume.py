"""A directory on the host's data volume that backs a docker volume, owned by its service's user.

A bind-backed local volume gets no copy of the image's directory (and so not its owner), unlike
a named volume in Docker's own storage: the directory is created by the deploy user and handed
to the uid the service runs as by a throw-away container of the service's own image.
"""

from __future__ import annotations

import re
import shlex

_OWNER = re.compile(r"^[0-9]+:[0-9]+$")


def prepare_script(*, directory: str, owner: str, image: str) -> str:
    """Runs on the host: create ``directory`` and chown it to ``owner`` unless it already belongs to it."""
    if not _OWNER.match(owner):
        raise ValueError(f"owner {owner!r}: expected numeric uid:gid")
    q = shlex.quote
    inner = f'[ "$(stat -c %u:%g /volume)" = {q(owner)} ] || chown -R {q(owner)} /volume'
    return f"""#!/bin/sh
# {directory} backs a docker volume on the data disk and belongs to {owner}, its service's user.
set -eu
mkdir -p {q(directory)}
docker run --rm --network none --user 0:0 --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE \\
  -v {q(directory + ":/volume")} --entrypoint sh {q(image)} -c {q(inner)}
echo {q(directory)}
"""
