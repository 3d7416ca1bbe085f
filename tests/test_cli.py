from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import unijob
from unijob.cli import main


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).output.strip() == f"unijob, version {unijob.__version__}"
    help_text = runner.invoke(main, ["--help"]).output
    assert "demo" in help_text and "worker" in help_text


def test_the_console_script_is_installed() -> None:
    result = subprocess.run([sys.executable, "-m", "unijob", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and unijob.__version__ in result.stdout


def test_the_readme_capability_matrix_is_generated_from_the_adapters() -> None:
    script = Path(__file__).resolve().parent.parent / "scripts" / "capability_matrix.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
