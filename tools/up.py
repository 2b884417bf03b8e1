"""`make up`: deploy the dev stack to the local Docker engine, or render it offline.

With the Pulumi CLI and a running Docker engine, this runs `pulumi up -s dev` (creating the
stack on first use; without a logged-in backend it keeps state in .pulumi-state/ next to the
project, with an empty passphrase, which is fine for dev only). Without them it says which is
missing and renders the dev stack offline into build/dev/ instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tools import mockrun, render

STACK = "dev"


def _engine_running() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, check=False)
    return result.returncode == 0


def _missing() -> list[str]:
    missing = []
    if shutil.which("pulumi") is None:
        missing.append("the Pulumi CLI (https://www.pulumi.com/docs/install/)")
    if not _engine_running():
        missing.append("a running Docker engine")
    return missing


def deploy() -> int:
    env = dict(os.environ)
    logged_in = subprocess.run(["pulumi", "whoami"], capture_output=True, env=env, check=False).returncode == 0
    if not logged_in:
        state = mockrun.ROOT / ".pulumi-state"
        state.mkdir(exist_ok=True)
        env["PULUMI_BACKEND_URL"] = f"file://{state}"
        env.setdefault("PULUMI_CONFIG_PASSPHRASE", "")
        print(f"No Pulumi backend logged in: keeping dev state in {state}")
    cwd = str(mockrun.ROOT)
    subprocess.run(["pulumi", "stack", "select", STACK, "--create"], cwd=cwd, env=env, check=True)
    return subprocess.run(["pulumi", "up", "--stack", STACK], cwd=cwd, env=env, check=False).returncode


def main() -> int:
    missing = _missing()
    if not missing:
        return deploy()
    print("Not deploying: this machine lacks " + " and ".join(missing) + ".")
    print("Rendering the dev stack offline instead (what `pulumi up -s dev` would declare):")
    return render.main([STACK])


if __name__ == "__main__":
    sys.exit(main())
