from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import unijob
from tests.harness import python_bin
from unijob import config
from unijob.cli import main


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).output.strip() == f"unijob, version {unijob.__version__}"
    help_text = runner.invoke(main, ["--help"]).output
    assert "demo" in help_text and "worker" in help_text


def test_a_configuration_error_is_one_clear_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIJOB_BACKEND", "dramatic")
    config.reset()  # read the environment again (the test's configuration is restored afterwards)
    result = CliRunner().invoke(main, ["worker"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: unknown unijob backend 'dramatic'; did you mean 'dramatiq'? (known: inline, test, huey, celery, rq, dramatiq)"
    )


def test_the_demo_runs_end_to_end_on_the_embedded_default(tmp_path: Path) -> None:
    """README's first command: nothing configured, so Huey on SQLite and its stock consumer."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("UNIJOB_")}
    demo = subprocess.run([python_bin("unijob"), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert demo.stdout.startswith("unijob demo on Huey (huey)")
    assert "Outcome: 8 of 8 jobs performed, 2 failed attempts retried by unijob." in demo.stdout
    assert "ok  SyncInventory: inventory of north synced on attempt 3" in demo.stdout
    assert list(tmp_path.iterdir()) == []  # its queue lives in a folder of its own, not where it was run


def test_the_console_script_is_installed() -> None:
    result = subprocess.run([sys.executable, "-m", "unijob", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and unijob.__version__ in result.stdout


def test_the_readme_capability_matrix_is_generated_from_the_adapters() -> None:
    script = Path(__file__).resolve().parent.parent / "scripts" / "capability_matrix.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
