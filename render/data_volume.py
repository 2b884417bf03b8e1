"""A directory on the host's data volume that backs a docker volume, owned by its service's user.

A bind-backed local volume gets no copy of the image's directory (and so not its owner), unlike
a named volume in Docker's own storage: the directory is created by the deploy user and handed
to the uid the service runs as by a throw-away container of the service's own image.
"""

from __future__ import annotations

import re
import shlex

_OWNER = re.compile(r"[0-9]+:[0-9]+")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def prepare_script(*, directory: str, owner: str | None = None, image: str | None = None) -> str:
    """Runs on the host: create ``directory`` and, given an ``owner``, chown it to that owner (with a
    throw-away container of ``image``) unless it already belongs to it. ``owner`` is numeric
    ``uid:gid``, or the name of a user of ``image`` (the official database images name theirs, and
    the uid differs between their alpine and debian variants): it is looked up inside the image."""
    q = shlex.quote
    if owner is None:
        return f"mkdir -p {q(directory)} && echo {q(directory)}"
    if image is None or not (_OWNER.fullmatch(owner) or _USER.fullmatch(owner)):
        raise ValueError(f"owner {owner!r}: expected numeric uid:gid or a user name, and the image that runs as it")
    if _OWNER.fullmatch(owner):
        inner = f'[ "$(stat -c %u:%g /volume)" = {q(owner)} ] || chown -R {q(owner)} /volume'
    else:
        inner = (
            f'owner="$(id -u {q(owner)}):$(id -g {q(owner)})" && '
            '{ [ "$(stat -c %u:%g /volume)" = "$owner" ] || chown -R "$owner" /volume; }'
        )
    return f"""#!/bin/sh
# A directory that backs a docker volume on the data disk, owned by its service's user.
set -eu
mkdir -p {q(directory)}
docker run --rm --network none --user 0:0 --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE \\
  -v {q(directory + ":/volume")} --entrypoint sh {q(image)} -c {q(inner)}
echo {q(directory)}
"""
