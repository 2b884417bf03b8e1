"""The second preview after an `up` is empty, for every stack and every example.

Each stack runs once under the mock runtime; its registrations become the state a real `pulumi up`
then `pulumi refresh` would leave (tools/readback: what each provider's Read stores, what its
Create adds); the program runs again against that state, and the plan, diffed with the
providers' own semantics, must hold no update, replacement, creation or deletion. This is the
daily drift check (`pulumi preview --refresh --expect-no-changes`) made to run here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components import swarm
from components.host import Host
from tests.helpers import stack_run
from tools import mockrun, readback

ROOT = Path(__file__).resolve().parent.parent
STACKS = [("dev", None), ("staging", None), ("prod", None)] + [
    (path.parent.name, path) for path in sorted((ROOT / "examples").glob("*/Pulumi.*.yaml"))
]


def second_preview(
    stack: str, config_file: Path | None, first: mockrun.Run | None = None
) -> tuple[readback.Plan, mockrun.Run]:
    """``first``: the up's run, if the test has it; else the program runs as the test has patched it."""
    if first is None:
        first = mockrun.run(stack, config_file=config_file)
    assert first.error is None, first.error
    state = readback.state_after_up(first.resources)
    second = mockrun.run(stack, config_file=config_file, prior=state)
    assert second.error is None, second.error
    return readback.plan(state, second.resources), second


def described(plan: readback.Plan, run: mockrun.Run) -> str:
    secrets = {r.urn: r.secret_paths() for r in run.resources}
    return plan.describe(lambda urn: secrets.get(urn, set()))


@pytest.mark.parametrize(("stack", "config_file"), STACKS, ids=[name for name, _ in STACKS])
def test_the_second_preview_after_an_up_is_empty(stack, config_file):
    plan, run = second_preview(stack, config_file, stack_run(stack, config_file))
    assert plan.empty, f"the preview after `pulumi up -s {stack}` would show:\n{described(plan, run)}"


def test_a_duration_the_provider_reads_back_in_another_form_is_caught(monkeypatch):
    # The provider stores "2m" for "120s" (shortDur): sending the long form is a diff every day.
    monkeypatch.setattr(swarm, "duration", lambda seconds: f"{seconds}s")
    plan, run = second_preview("prod", None)
    text = described(plan, run)
    assert not plan.empty
    assert "docker:index/service:Service::web-service" in text
    assert "taskSpec.restartPolicy.window: '2m' => '120s'" in text
    source = "kreuzwerker/terraform-provider-docker v4.5.0 internal/provider/resource_docker_service_structures.go"
    assert f"per {source}" in text


def test_an_image_left_as_a_tag_after_create_is_caught(monkeypatch):
    # Create pins the tag to its digest (QueryRegistry); the next preview would send the tag back.
    monkeypatch.setattr(Host, "image", lambda self, reference: reference)
    plan, run = second_preview("prod", None)
    text = described(plan, run)
    # prod's postgres runs an image built on the host (point-in-time recovery): the scheduler's is pulled.
    assert "~ update  docker:index/service:Service::scheduler-service" in text
    assert "taskSpec.containerSpec.image: 'crazymax/swarm-cronjob:1.14.0@sha256:" in text
    assert "=> 'crazymax/swarm-cronjob:1.14.0'" in text
