"""Entry point the Pulumi CLI runs for `--policy-pack policy`: serves the house rules.

The rules live in policy/rules.py as plain functions so they can be tested without the CLI.
"""

import sys
from pathlib import Path

# The CLI runs this file from the pack's directory; make `policy.rules` importable from any cwd.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack

from policy.rules import POLICIES

PolicyPack(name="keel-house-rules", policies=POLICIES)
