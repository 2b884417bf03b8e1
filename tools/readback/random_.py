"""hashicorp/terraform-provider-random, as bundled by pulumi-random 4.21.4: every argument of
random_password forces replacement (internal/provider/resource_password.go); ``result`` is kept."""

from __future__ import annotations

import hashlib
from typing import Any

from tools.readback.model import ResourceModel

V = "hashicorp/terraform-provider-random v3"


def _password(state: dict[str, Any], name: str) -> dict[str, Any]:
    return {"result": "mock-generated-" + hashlib.sha256(name.encode()).hexdigest()[:24]}


MODELS = {
    "random:index/randomPassword:RandomPassword": ResourceModel(
        "random:index/randomPassword:RandomPassword",
        source=f"{V} internal/provider/resource_password.go",
        replace_on_change=True,
        zero_is_unset=False,
        outputs=_password,
        output_names=("result",),
    )
}
