"""pulumi/pulumi-command v1.2.1 (a native provider, not bridged).

Sources: provider/pkg/provider/remote/commandController.go and local/commandController.go
(Diff: ``triggers`` replace; any other input change runs ``update``, or ``create`` again when
``update`` is unset; stdout/stderr are outputs).
"""

from __future__ import annotations

from typing import Any

from tools.readback.model import ResourceModel, Rule

V = "pulumi/pulumi-command v1.2.1"


def _outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    return {"stdout": "ready", "stderr": ""}


MODELS = {
    m.type: m
    for m in (
        ResourceModel(
            type="command:remote:Command",
            source=f"{V} provider/pkg/provider/remote/commandController.go",
            zero_is_unset=False,
            rules=(Rule("triggers", f"{V} provider/pkg/provider/remote/commandController.go", force_new=True),),
            outputs=_outputs,
            output_names=("stdout", "stderr"),
        ),
        ResourceModel(
            type="command:local:Command",
            source=f"{V} provider/pkg/provider/local/commandController.go",
            zero_is_unset=False,
            rules=(Rule("triggers", f"{V} provider/pkg/provider/local/commandController.go", force_new=True),),
            outputs=_outputs,
            output_names=("stdout", "stderr"),
        ),
    )
}
