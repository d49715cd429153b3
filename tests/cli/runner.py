"""Running ``strongroom-cli`` as a script does: a real process, the service's environment variables
(``CLOUDHSM_ROLE``, ``CLOUDHSM_PIN``), the JSON envelope read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..cluster.nodes import initial_password

ADMIN_PW, ALICE_PW, BOB_PW = "admin-pass-1", "alice-pass-1", "bob-pass-1"
ALICE, BOB = f"alice:{ALICE_PW}", f"bob:{BOB_PW}"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any CLI settings or credentials, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRONGROOM_", "CLOUDHSM_"))}
    env.update(extra)
    return env


def run(cluster_file: Path | None, *args: str, pin: str | None = None, role: str = "crypto-user",
        env: dict[str, str] | None = None, module: str = "strongroom.cli.hsm") -> subprocess.CompletedProcess[str]:
    """The finished ``strongroom-cli ARGS`` (or another ``module``), stdin closed."""
    settings = clean_env(**(env or {}))
    if cluster_file is not None:
        settings["STRONGROOM_CLUSTER"] = str(cluster_file)
    if pin is not None:
        settings.update(CLOUDHSM_PIN=pin, CLOUDHSM_ROLE=role)
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120,
                          env=settings, stdin=subprocess.DEVNULL)


def cli(cluster_file: Path, *args: str, pin: str | None = None, role: str = "crypto-user",
        ok: bool | None = True) -> Any:
    """The command's data; ``ok`` None: the data, or None when it failed."""
    done = run(cluster_file, *args, pin=pin, role=role)
    out = json.loads(done.stdout)
    if ok is None:
        return out["data"] if done.returncode == 0 else None
    assert (done.returncode == 0) == ok and out["error_code"] == (0 if ok else 1), done.stdout + done.stderr
    return out["data"]


def initial(cluster_file: Path) -> str:
    """The unactivated admin's initial password of the cluster's node."""
    return initial_password(cluster_file.parent / "hsm")
