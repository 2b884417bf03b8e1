"""The backup job's scripts of a stack with MariaDB stores: shellcheck and dash accept them, and
each store's calls carry its own host, port, database and user."""

from __future__ import annotations

import subprocess
from pathlib import Path

from render.backup import SCRIPT_NAMES, BackupSpec, render_backup_scripts
from stores.mariadb.kind import MariadbTarget
from tests.tool_requirements import require_tool


def _scripts() -> dict[str, str]:
    # Two stores of the kind: its shell functions are defined once, called per store.
    targets = (
        MariadbTarget(name="orders", host="shop-orders", database="orders-db", user="orders"),
        MariadbTarget(name="ledger", host="shop-ledger", database="ledger", user="books"),
    )
    spec = BackupSpec(
        repository="s3:https://fsn1.your-objectstorage.com/shop-backups/shop/prod",
        snapshot_host="shop-prod",
        schedule="0 * * * *",
        targets=targets,
    )
    return render_backup_scripts(spec)


def test_a_mariadb_stack_ships_its_restore_script_beside_the_jobs() -> None:
    assert sorted(_scripts()) == sorted((*SCRIPT_NAMES, "restore-mariadb.sh"))


def test_every_script_passes_shellcheck_and_dash(tmp_path: Path) -> None:
    scripts = _scripts()
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
        parsed = subprocess.run(
            ["sh", "-n", name], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
        )
        assert parsed.returncode == 0, f"{name}: {parsed.stderr}"
    result = subprocess.run(
        [require_tool("shellcheck"), "--shell=sh", "--external-sources", "--severity=style", *scripts],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_store_is_dumped_and_drilled_with_its_own_host_database_and_user() -> None:
    scripts = _scripts()
    assert scripts["backup.sh"].count("backup_mariadb() {") == 1
    assert scripts["drill.sh"].count("drill_mariadb() {") == 1
    stores = (("orders", "shop-orders", "orders-db orders"), ("ledger", "shop-ledger", "ledger books"))
    for script, function in (("backup.sh", "backup_mariadb"), ("drill.sh", "drill_mariadb")):
        for store, host, words in stores:
            env = store.upper()
            call = f'{function} {store} "${{KEEL_HOST_{env}:-{host}}}" \\\n  "${{KEEL_PORT_{env}:-3306}}" {words}\n'
            assert call in scripts[script]
