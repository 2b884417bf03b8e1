"""The read-back model of pulumi-command v1.2.1 (tools/readback/command.py), rule by rule.

Sources: pulumi-command v1.2.1 provider/pkg/provider/; pulumi-go-provider v1.3.0 infer/resource.go
``diff``; pulumi v3.259.0 pkg/resource/deploy/step_generator.go applyReplaceOnChanges.
"""

from __future__ import annotations

from tools.readback import command


def paths(changes) -> dict[str, bool]:
    return {change.path: change.replaces for change in changes}


CONNECTION = {"host": "198.51.100.10", "user": "deploy", "hostKey": "ssh-ed25519 AAAA", "dialErrorLimit": 40}
REMOTE = {"connection": CONNECTION, "create": "#!/bin/sh\necho ready\n", "triggers": ["2741735", "9266404"]}


def state() -> dict:
    return command.REMOTE_COMMAND.state(REMOTE, "ready")


def test_a_changed_trigger_replaces_the_command():
    """common/inputs.go tags triggers replaceOnChanges; the SDK adds replace_on_changes ["triggers[*]"]
    and the engine replaces for a changed "triggers[1]" (applyReplaceOnChanges, PropertyPath.Contains)."""
    changed = {**REMOTE, "triggers": ["2741735", "1"]}
    assert paths(command.REMOTE_COMMAND.diff(state(), changed)) == {"triggers[1]": True}


def test_a_trigger_added_to_the_list_replaces_the_command():
    """A longer list is an added element "triggers[2]": contained by "triggers[*]"."""
    longer = {**REMOTE, "triggers": [*REMOTE["triggers"], "x"]}
    assert paths(command.REMOTE_COMMAND.diff(state(), longer)) == {"triggers": True}


def test_adding_or_dropping_the_whole_trigger_list_only_updates():
    """The diff key is "triggers", which "triggers[*]" does not contain (len(other) < len(p))."""
    bare = {k: v for k, v in REMOTE.items() if k != "triggers"}
    assert paths(command.REMOTE_COMMAND.diff(state(), bare)) == {"triggers": False}
    untriggered = command.REMOTE_COMMAND.state(bare, "ready")
    assert paths(command.REMOTE_COMMAND.diff(untriggered, REMOTE)) == {"triggers": False}


def test_a_new_connection_script_or_stdin_updates_and_so_reruns_create():
    """infer's diff: every other changed input is an update; remote/commandController.go Update runs
    ``update``, or ``create`` again when ``update`` is unset, on the new connection."""
    moved = {**REMOTE, "connection": {**CONNECTION, "host": "198.51.100.11"}}
    assert paths(command.REMOTE_COMMAND.diff(state(), moved)) == {"connection.host": False}
    assert paths(command.REMOTE_COMMAND.diff(state(), {**REMOTE, "stdin": "x"})) == {"stdin": False}
    assert paths(command.REMOTE_COMMAND.diff(state(), {**REMOTE, "create": "true"})) == {"create": False}
    assert paths(command.REMOTE_COMMAND.diff(state(), {**REMOTE, "environment": {"A": "1"}})) == {"environment": False}


def test_connection_defaults_are_stored_and_match_an_unset_field():
    """remote/connection.go Annotate: user root, port 22, dialErrorLimit 10, perDialTimeout 15,
    applied by Check to the stored inputs."""
    stored = command.REMOTE_COMMAND.state({**REMOTE, "connection": {"host": "h"}}, "c")
    assert stored["connection"] == {"host": "h", "user": "root", "port": 22, "dialErrorLimit": 10, "perDialTimeout": 15}
    assert command.REMOTE_COMMAND.diff(stored, {**REMOTE, "connection": {"host": "h", "port": 22.0}}) == []


def test_ignored_inputs_take_the_states_value():
    """infer/resource.go diff copies req.State over each ignored path before comparing."""
    assert command.REMOTE_COMMAND.diff(state(), {**REMOTE, "create": "other"}, ("create",)) == []


def test_local_command_diffs_the_same_way():
    """local/commandController.go: the same Create/Update/Delete and infer diff; interpreter is an input."""
    inputs = {"create": "x", "interpreter": ["/bin/sh", "-c"], "triggers": ["a"]}
    stored = command.LOCAL_COMMAND.state(inputs, "swarm")
    assert paths(command.LOCAL_COMMAND.diff(stored, {**inputs, "interpreter": ["/bin/bash", "-c"]})) == {
        "interpreter[0]": False
    }
    assert paths(command.LOCAL_COMMAND.diff(stored, {**inputs, "triggers": ["b"]})) == {"triggers[0]": True}
