"""pulumi/pulumi-command v1.2.1 (a native provider, not bridged), with pulumi-go-provider v1.3.0.

Sources (provider/pkg/provider/): remote/commandController.go and local/commandController.go
(Create, Update, Delete), common/inputs.go (``triggers`` tagged replaceOnChanges), remote/command.go,
remote/connection.go (defaults), local/base.go; the generic diff is pulumi-go-provider v1.3.0
infer/resource.go ``diff``.

- No resource has a Diff of its own: infer's diff compares the old inputs (or the state) with the
  new inputs; every changed input is an update, except the properties tagged replaceOnChanges.
  Those keys are top-level ("triggers"), while the diff's keys are paths ("triggers[0]"), so the
  provider itself never replaces: the SDK adds the resource option
  ``replace_on_changes=["triggers[*]"]`` (pulumi_command/remote/command.py,
  local/command.py), and the engine replaces when that path *contains* a changed path
  (pulumi v3.259.0 pkg/resource/deploy/step_generator.go applyReplaceOnChanges,
  sdk/go/common/resource/properties_path.go Contains). "triggers[*]" contains "triggers[0]" but
  not "triggers": a changed, added or removed element replaces; adding or dropping the whole
  list is an update.
- Update runs ``update``, or ``create`` when ``update`` is unset: any other input change (the
  connection, stdin, environment, the script itself) runs the create script again, on the new
  connection. Delete runs ``delete`` and nothing when it is unset.
- ignore_changes: infer's diff first copies the state's value over the new input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tools.readback.model import Change, ResourceModel, Rule

V = "pulumi/pulumi-command v1.2.1"
INFER = "pulumi-go-provider v1.3.0 infer/resource.go diff"
COMMON = f"{V} provider/pkg/provider/common/inputs.go"
REMOTE = f"{V} provider/pkg/provider/remote/commandController.go"
LOCAL = f"{V} provider/pkg/provider/local/commandController.go"
CONNECTION = f"{V} provider/pkg/provider/remote/connection.go Annotate"
ENGINE_ROC = "pulumi v3.259.0 pkg/resource/deploy/step_generator.go applyReplaceOnChanges (triggers[*])"

CONNECTION_DEFAULTS = {"user": "root", "port": 22, "dialErrorLimit": 10, "perDialTimeout": 15}


def _connection_with_defaults(connection: Any) -> Any:
    """Check applies the infer defaults (user root, port 22, dialErrorLimit 10, perDialTimeout 15):
    the stored inputs hold them whether the program sent them or not."""
    if not isinstance(connection, dict):
        return connection
    return {**CONNECTION_DEFAULTS, **connection}


def _outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    # What the script prints is not modelled: the program only waits on ``stdout``.
    return {"stdout": "", "stderr": ""}


@dataclass(frozen=True)
class CommandModel(ResourceModel):
    """The engine's replaceOnChanges ``triggers[*]``: a list whose length changed is a set of
    added/removed elements (replace); a list appearing or vanishing is one change at ``triggers``
    (update)."""

    def diff(
        self, state: Mapping[str, Any], inputs: Mapping[str, Any], ignore_changes: tuple[str, ...] = ()
    ) -> list[Change]:
        changes = super().diff(state, inputs, ignore_changes)
        out = []
        for change in changes:
            if change.path == "triggers" and isinstance(change.old, list) and isinstance(change.new, list):
                change = Change(change.path, change.old, change.new, True, ENGINE_ROC)
            out.append(change)
        return out


def _rules(controller: str, *extra: Rule) -> tuple[Rule, ...]:
    return (
        Rule("triggers.*", f"{COMMON}: triggers replaceOnChanges; {ENGINE_ROC}", force_new=True),
        Rule("triggers", f"{INFER}: a whole list added or removed is an update (path 'triggers')"),
        Rule("create", f"{controller} Update: runs update, or create when update is unset"),
        Rule("update", f"{controller} Update"),
        Rule("delete", f"{controller} Delete: runs delete, nothing when unset"),
        Rule("stdin", f"{INFER}: any change is an update (re-runs create)"),
        Rule("environment", f"{INFER}: any change is an update (re-runs create)"),
        Rule("logging", f"{INFER}: any change is an update (re-runs create)"),
        Rule("addPreviousOutputInEnv", f"{INFER}: any change is an update (re-runs create)"),
        *extra,
    )


REMOTE_COMMAND = CommandModel(
    type="command:remote:Command",
    source=REMOTE,
    zero_is_unset=False,
    rules=_rules(
        REMOTE,
        Rule(
            "connection",
            f"{CONNECTION}; {INFER}: a change is an update that re-runs create on the new connection",
            read=_connection_with_defaults,
        ),
        Rule("connection.user", CONNECTION + " SetDefault root", default="root"),
        Rule("connection.port", CONNECTION + " SetDefault 22", default=22),
        Rule("connection.dialErrorLimit", CONNECTION + " SetDefault 10", default=10),
        Rule("connection.perDialTimeout", CONNECTION + " SetDefault 15", default=15),
    ),
    outputs=_outputs,
    output_names=("stdout", "stderr"),
)
LOCAL_COMMAND = CommandModel(
    type="command:local:Command",
    source=LOCAL,
    zero_is_unset=False,
    rules=_rules(
        LOCAL,
        Rule("interpreter", f"{V} provider/pkg/provider/local/base.go; {INFER}: a change is an update"),
        Rule("dir", f"{V} provider/pkg/provider/local/base.go; {INFER}: a change is an update"),
        Rule("assetPaths", f"{V} provider/pkg/provider/local/base.go; {INFER}: a change is an update"),
        Rule("archivePaths", f"{V} provider/pkg/provider/local/base.go; {INFER}: a change is an update"),
    ),
    outputs=_outputs,
    output_names=("stdout", "stderr"),
)

MODELS = {m.type: m for m in (REMOTE_COMMAND, LOCAL_COMMAND)}
