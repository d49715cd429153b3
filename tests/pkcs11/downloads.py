"""What a test does when a download it needs (Debian packages, a PyPI source distribution) fails.

Such tests carry the ``network`` marker (``pytest -m "not network"`` leaves them out). Offline they skip; with
``CI`` set in the environment they fail instead, so a green CI run has run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import NoReturn

import pytest


def unreachable(reason: str) -> NoReturn:
    """Skip the running test for ``reason``, or fail it when ``CI`` is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: a download that fails is a failure)")
    pytest.skip(reason)


def sdist_tests(project: str, version: str, folder: Path, tests: str, marker: str) -> Path | None:
    """The ``tests`` folder of ``project``'s PyPI source distribution at ``version``, unpacked once under
    ``folder/suite`` (so that the installed package is imported, not its sources), or None if PyPI cannot be
    reached. ``marker``: a file whose presence in that folder means it is unpacked."""
    unpacked = folder / "suite"
    if (unpacked / tests / marker).exists():
        return unpacked
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", project, "--no-deps",
                           f"{project}=={version}", "-d", str(folder)], capture_output=True, text=True, timeout=300)
    archives = sorted(a for a in folder.glob("*.tar.gz")
                      if a.name.lower().replace("-", "_").startswith(project.lower().replace("-", "_")))
    if done.returncode != 0 or not archives:
        return None
    staging = folder / ".unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archives[0]) as archive:
        archive.extractall(staging, filter="data")
    [root] = [p for p in staging.iterdir() if p.is_dir()]
    (staging / "suite").mkdir()
    (root / tests).rename(staging / "suite" / tests)
    (staging / "suite").rename(unpacked)
    shutil.rmtree(staging)
    return unpacked
