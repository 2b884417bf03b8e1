"""A stack file of up to 1 MB costs little to refuse or read, however it is built.

Each file of tests/hostile_files.py (an alias bomb, nesting as deep as 1 MB allows, 1 MB of keys,
services, list items or one value) is read in a fresh interpreter as the mock runtime reads a
stack file: the YAML reader, then the loader. Each must end in a refusal or a config, never a
crash, and add less than MAX_EXTRA_MB to the interpreter's peak memory. How long each takes is
printed by `python -m bench yaml` (beside PyYAML's libyaml loader and its plain safe_load), never asserted here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile_files import SIZE, files, measure

MAX_EXTRA_MB = 200
FILES = files()


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_megabyte_stack_file_is_refused_or_read_within_bounded_memory(name: str, tmp_path: Path):
    text = FILES[name]
    assert len(text.encode()) <= SIZE
    path = tmp_path / "Pulumi.hostile.yaml"
    path.write_text(text)
    result = measure(path)
    outcome = str(result["outcome"])
    assert outcome.startswith(("refused: ", "loaded")), outcome
    assert isinstance(result["extra_peak_mb"], float) and result["extra_peak_mb"] < MAX_EXTRA_MB, result
