"""hashicorp/terraform-provider-random v3.9.0, as bundled by pulumi-random 4.21.4 (Plugin Framework).

pulumi/pulumi-random's provider/shim/go.mod pins terraform-provider-random at f8d869dc98d9, the
v3.9.0 tag ("chore: prep for release v3.9.0", 2026-05-13). Paths are under internal/.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from tools.readback.model import ResourceModel, Rule

V = "hashicorp/terraform-provider-random v3.9.0"
PASSWORD_GO = f"{V} internal/provider/resource_password.go"
STRING_GO = f"{V} internal/random/string.go CreateString"

NUMERIC = "0123456789"
LOWER = "abcdefghijklmnopqrstuvwxyz"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SPECIAL = "!@#$%&*()-_=+[]{}<>:?"


def _stream(seed: str) -> Any:
    counter = 0
    while True:
        yield from hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1


def generate(params: Mapping[str, Any], seed: str) -> str:
    """CreateString with a deterministic source instead of crypto/rand: the ``min_*`` characters
    from their sets, the rest from the union of the enabled sets (upper, lower, numeric default
    true; special default true, ``override_special`` replacing its set), then shuffled."""
    special = params.get("overrideSpecial") or SPECIAL
    enabled = {
        UPPER: params.get("upper", True),
        LOWER: params.get("lower", True),
        NUMERIC: params.get("numeric", params.get("number", True)),
        special: params.get("special", True),
    }
    chars = "".join(charset for charset, on in enabled.items() if on)
    if not chars:
        raise ValueError("the character set specified is empty")
    minimums = {
        NUMERIC: int(params.get("minNumeric") or 0),
        LOWER: int(params.get("minLower") or 0),
        UPPER: int(params.get("minUpper") or 0),
        special: int(params.get("minSpecial") or 0),
    }
    source = _stream(seed)
    result = [charset[next(source) % len(charset)] for charset, count in minimums.items() for _ in range(count)]
    length = int(params.get("length") or 0)
    result += [chars[next(source) % len(chars)] for _ in range(length - len(result))]
    order = [next(source) for _ in result]
    return "".join(char for _, char in sorted(zip(order, result, strict=True), key=lambda pair: pair[0]))


def _password_outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    """Create: ``result`` from CreateString and ``bcrypt_hash`` of it (a mock hash here: bcrypt is
    salted, so the real value differs on every create anyway)."""
    result = generate(state, name)
    return {"result": result, "bcryptHash": "$2a$10$" + hashlib.sha256(result.encode()).hexdigest()[:53]}


PASSWORD = ResourceModel(
    type="random:index/randomPassword:RandomPassword",
    source=PASSWORD_GO,
    zero_is_unset=False,
    rules=(
        Rule("length", f"{PASSWORD_GO} passwordSchemaV3: length Required, RequiresReplace", force_new=True),
        Rule(
            "keepers",
            f"{PASSWORD_GO} passwordSchemaV3: keepers RequiresReplaceIfValuesNotNull",
            force_new=True,
        ),
        Rule(
            "overrideSpecial",
            f'{PASSWORD_GO} passwordSchemaV3: RequiresReplaceIf (unless "" to null)',
            force_new=True,
        ),
        *(
            Rule(
                attribute,
                f"{PASSWORD_GO} passwordSchemaV3: {attribute} Default {default}, RequiresReplace",
                force_new=True,
                default=default,
            )
            for attribute, default in (
                ("special", True),
                ("upper", True),
                ("lower", True),
                ("numeric", True),
                ("number", True),
                ("minNumeric", 0),
                ("minUpper", 0),
                ("minLower", 0),
                ("minSpecial", 0),
            )
        ),
    ),
    outputs=_password_outputs,
    output_names=("result", "bcryptHash"),
)

MODELS = {PASSWORD.type: PASSWORD}
