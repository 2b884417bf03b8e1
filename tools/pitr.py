"""What the archive's expiry needs, for the place that holds a key that may delete.

    python -m tools.pitr expire-config prod            # one pgbackrest.conf per archived store
    python -m tools.pitr expire-config almeyo --config-file examples/almeyo/Pulumi.almeyo.yaml

The host's archive key may write but never delete (backup/pitr/access_key_secret), so
`pgbackrest expire` (which applies backup/pitr/recovery_window_days) cannot run on the host: it runs
from a scheduled CI job or an operator's machine, with this configuration and the delete-capable key
and cipher passphrase in PGBACKREST_REPO1_S3_KEY, PGBACKREST_REPO1_S3_KEY_SECRET and
PGBACKREST_REPO1_CIPHER_PASS (docs/restore.md, "Expiry"). Needs no credentials itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from config import ConfigError, parse
from render import pitr
from tools import mockrun


def expire_configs(stack: str, config_file: Path | None = None) -> dict[str, str]:
    """Store name -> the pgbackrest.conf its expiry runs with (no secrets in it)."""
    values, _ = mockrun.read_config_file(config_file or mockrun.stack_file(stack))
    cfg = parse({key.split(":", 1)[1]: value for key, value in values.items() if key.startswith("keel:")})
    return {name: pitr.render_expire_conf(spec) for name, spec in pitr.pitr_specs(cfg, stack_name=stack).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.pitr", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    expire = commands.add_parser("expire-config", help="print the expiry configuration of every archived store")
    expire.add_argument("stack")
    expire.add_argument("--config-file", type=Path)
    args = parser.parse_args(argv)
    try:
        configs = expire_configs(args.stack, args.config_file)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not configs:
        print(f"error: stack {args.stack} archives no PostgreSQL store (backup/pitr)", file=sys.stderr)
        return 2
    for name, text in configs.items():
        run = f"pgbackrest --config=expire-{name}.conf --stanza={name} expire"
        print(f"# ---- store {name}: save as expire-{name}.conf, run: {run}")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
