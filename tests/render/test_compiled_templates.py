"""Compiled templates are kept between processes (render/__init__.py, Jinja's bytecode cache) and
never outlive the text they were compiled from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import render


@pytest.fixture
def fresh_process() -> Iterator[None]:
    """A new process's view: no environment built yet (each is kept per directory for a process)."""
    render.environment.cache_clear()
    yield
    render.environment.cache_clear()


def _cache_files() -> set[str]:
    cache = render._compiled_templates()
    assert cache is not None, "no private temporary directory for the cache here"
    return set(os.listdir(cache.directory))


def test_a_template_compiled_once_is_read_back_by_the_next_process(tmp_path: Path, fresh_process: None) -> None:
    (tmp_path / "greeting.j2").write_text("hello {{ name }}\n")
    before = _cache_files()
    assert render.render_from(tmp_path, "greeting.j2", name="world") == "hello world\n"
    written = _cache_files() - before
    assert len(written) == 1 and all(name.endswith(".cache") for name in written)

    render.environment.cache_clear()
    assert render.render_from(tmp_path, "greeting.j2", name="again") == "hello again\n"
    assert _cache_files() - before == written  # read back, nothing compiled anew


def test_a_changed_template_is_compiled_again_never_served_stale(tmp_path: Path, fresh_process: None) -> None:
    template = tmp_path / "greeting.j2"
    template.write_text("hello {{ name }}\n")
    assert render.render_from(tmp_path, "greeting.j2", name="world") == "hello world\n"

    render.environment.cache_clear()
    template.write_text("goodbye {{ name }}\n")
    assert render.render_from(tmp_path, "greeting.j2", name="world") == "goodbye world\n"


def test_a_cache_that_cannot_be_written_only_costs_a_compile(
    tmp_path: Path, fresh_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = render._compiled_templates()
    assert cache is not None
    monkeypatch.setattr(cache, "directory", str(tmp_path / "gone"))  # a directory removed under it
    (tmp_path / "greeting.j2").write_text("hello {{ name }}\n")
    assert render.render_from(tmp_path, "greeting.j2", name="world") == "hello world\n"
