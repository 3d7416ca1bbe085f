"""perform_later, perform_now and new are typed with the job function's own parameters."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import unijob

SNIPPET = textwrap.dedent(
    """
    import unijob

    @unijob.job(queue="mail")
    def send_welcome(user_id: int) -> str:
        return str(user_id)

    send_welcome.perform_later(42)
    send_welcome.set(wait=5, priority=10).perform_later(user_id=42)
    result: str = send_welcome.perform_now(42)
    send_welcome.perform_later("x")
    send_welcome.new(42, 43)
    wrong: int = send_welcome.perform_now(1)
    """
)


def test_mypy_strict_rejects_wrong_arguments(tmp_path: Path) -> None:
    (tmp_path / "snippet.py").write_text(SNIPPET)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file", "/dev/null", "snippet.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MYPYPATH": str(Path(unijob.__file__).parent.parent)},  # editable installs hide it
    )
    errors = [line for line in result.stdout.splitlines() if line.startswith("snippet.py") and ": error:" in line]
    assert any(
        ':11: error: Argument 1 to "perform_later" of "JobRef" has incompatible type "str"; expected "int"' in e for e in errors
    ), result.stdout
    assert any(':12: error: Too many arguments for "new" of "JobRef"' in e for e in errors), result.stdout
    assert any(
        ':13: error: Incompatible types in assignment (expression has type "str", variable has type "int")' in e for e in errors
    ), result.stdout
    assert len(errors) == 3, result.stdout
