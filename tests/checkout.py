"""Run Python code in a fresh interpreter that imports this checkout's package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
    """``python -E -s -c code args...`` in the repository root; output captured as text.

    -E and -s keep the environment (PYTHONPATH and the like) and the user's site-packages
    out; ``-c`` puts the working folder, the repository root, first on ``sys.path``, so the
    child imports this checkout's package, not whichever copy is installed.
    """
    return subprocess.run(
        [sys.executable, "-E", "-s", "-c", code, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        **options,
    )
