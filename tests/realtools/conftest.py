"""Session fixtures of the real-tool tests: one S3 server and one restic template repository per
test process (each pytest-xdist worker has its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_helpers import template_repository
from s3_harness import S3Server, s3_server


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="session")
def restic_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template_repository(tmp_path_factory.mktemp("restic"))
