"""Every code block of the README and docs/ runs as written, so the docs stay true.

- ``python`` blocks of one page run in order in one namespace, in an empty working directory
  (so jobs on the default backend go to a SQLite file there). A ``test_*`` function a block
  defines is then called, with ``unijob_test`` (the test adapter) as its fixture.
- ``toml`` blocks parse; one with a ``[tool.unijob]`` table is loaded as a project's settings.
- ``json`` blocks parse. ``text`` blocks are output and are not run.
- ``sh`` blocks are commands: the stock worker commands in them are the ones the contract
  suite runs (tests/harnesses), and every ``unijob`` subcommand they name exists.

Only the service URLs are filled in: the machine's Redis and RabbitMQ stand in for
``localhost``, on a database and a vhost of this test's own, emptied afterwards.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests import harnesses
from tests.harness import ROOT, ensure_rabbitmq_vhost, require_service
from unijob import config
from unijob.adapters.test import TestAdapter
from unijob.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LANGUAGES = {"python", "toml", "json", "sh", "text"}
REDIS_DB = 14
VHOST = "unijob_docs"
URLS = {  # what the docs say -> what this machine has for the test
    re.compile(r"redis://localhost:6379/\d+"): f"redis://127.0.0.1:6379/{REDIS_DB}",
    re.compile(r"redis://localhost(?=[\"'/])"): f"redis://127.0.0.1:6379/{REDIS_DB}",
    re.compile(r"amqp://guest:guest@localhost(:5672)?//?"): f"amqp://guest:guest@127.0.0.1:5672/{VHOST}",
}


def blocks(page: Path) -> list[tuple[str, str, int]]:
    """``(language, code, line)`` of each fenced block of a page."""
    found, lines = [], page.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = re.match(r"^(\s*)```(\S*)\s*$", lines[index])
        if fence:
            start, indent = index, fence.group(1)
            index += 1
            body = []
            while not lines[index].startswith(f"{indent}```"):
                body.append(lines[index][len(indent) :])
                index += 1
            found.append((fence.group(2), "\n".join(body) + "\n", start + 1))
        index += 1
    return found


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def with_test_urls(code: str) -> str:
    for pattern, replacement in URLS.items():
        code = pattern.sub(replacement, code)
    return code


@pytest.fixture
def services() -> Iterator[None]:
    require_service("redis")
    require_service("rabbitmq")
    ensure_rabbitmq_vhost(VHOST)
    redis.Redis(db=REDIS_DB).flushdb()
    yield
    redis.Redis(db=REDIS_DB).flushdb()
    subprocess.run(["rabbitmqctl", "delete_vhost", VHOST], capture_output=True, check=False)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_block_names_its_language(page: Path) -> None:
    unnamed = [line for language, _, line in blocks(page) if language not in LANGUAGES]
    assert unnamed == [], f"{page_id(page)}: blocks at lines {unnamed} need one of {sorted(LANGUAGES)} after ```"


@pytest.mark.parametrize("page", [p for p in PAGES if any(b[0] == "python" for b in blocks(p))], ids=page_id)
def test_python_blocks_run_as_written(page: Path, services: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("UNIJOB_ADAPTER", "huey")  # the default a reader has, in this empty folder
    config.reset()
    module = types.ModuleType("docs_" + re.sub(r"\W", "_", page.stem.lower()))
    sys.modules[module.__name__] = module  # jobs are registered under it, and found by the worker side
    try:
        for language, code, line in blocks(page):
            if language != "python":
                continue
            before = set(vars(module))
            try:
                exec(compile(with_test_urls(code), f"{page_id(page)}:{line}", "exec"), vars(module))
                for name in sorted(set(vars(module)) - before):
                    if name.startswith("test_") and callable(vars(module)[name]):
                        _call_test(vars(module)[name])
            except Exception as error:
                raise AssertionError(f"the python block at {page_id(page)}:{line} failed: {error!r}") from error
    finally:
        sys.modules.pop(module.__name__, None)
        config.reset()


def _call_test(function: Any) -> None:
    adapter = TestAdapter(alias="test")
    with config.override(adapter):
        function(unijob_test=adapter)


@pytest.mark.parametrize("page", [p for p in PAGES if any(b[0] == "toml" for b in blocks(p))], ids=page_id)
def test_toml_blocks_are_valid_settings(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in config.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    for language, code, line in blocks(page):
        if language != "toml":
            continue
        data = tomllib.loads(code)
        if "unijob" in data.get("tool", {}):
            (tmp_path / "pyproject.toml").write_text(code)
            try:
                config.load_settings(tmp_path)
            except Exception as error:
                raise AssertionError(f"the toml block at {page_id(page)}:{line} is not valid: {error}") from error


@pytest.mark.parametrize("page", [p for p in PAGES if any(b[0] == "json" for b in blocks(p))], ids=page_id)
def test_json_blocks_parse(page: Path) -> None:
    for language, code, line in blocks(page):
        if language == "json":
            try:
                json.loads(code)
            except ValueError as error:
                raise AssertionError(f"the json block at {page_id(page)}:{line} does not parse: {error}") from error


def shell_commands(page: Path) -> list[tuple[list[str], int]]:
    commands = []
    for language, code, line in blocks(page):
        if language == "sh":
            joined = code.replace("\\\n", " ")
            for command in joined.splitlines():
                command = command.split(" #")[0].strip()
                if command and not command.startswith("#"):
                    commands.append((shlex.split(command), line))
    return commands


STOCK_WORKERS = ("celery", "rq", "dramatiq", "huey_consumer")


def harness_commands() -> list[list[str]]:
    commands = []
    for name in harnesses.MODULES:
        argv = harnesses.load(name).worker_argv()
        if argv:
            commands.append([Path(argv[0]).name, *argv[1:]])
    return commands


@pytest.mark.parametrize("page", [p for p in PAGES if shell_commands(p)], ids=page_id)
def test_shell_blocks_name_real_commands(page: Path) -> None:
    known = harness_commands()
    subcommands = set(main.commands)  # type: ignore[attr-defined]
    for argv, line in shell_commands(page):
        if argv[0] in STOCK_WORKERS and "--help" not in argv:
            assert any(_same_command(argv, other) for other in known), (
                f"{page_id(page)}:{line}: {shlex.join(argv)} is not a stock worker command the contract suite runs"
            )
        if argv[0] == "unijob" and len(argv) > 1 and not argv[1].startswith("-"):
            assert argv[1] in subcommands, f"{page_id(page)}:{line}: there is no 'unijob {argv[1]}'"


def _same_command(documented: list[str], run: list[str]) -> bool:
    """The same program and arguments, up to the broker URL and the node name a test gives it."""

    def normal(argv: list[str]) -> list[str]:
        out = []
        for arg in argv:
            if re.match(r"^(redis|amqp)://", arg):
                arg = "URL"
            elif arg.startswith("unijob-") and "@%h" in arg:
                arg = "NODE@%h"
            out.append(arg)
        return out

    a, b = normal(documented), normal(run)
    if "--hostname" in a or "--hostname" not in b:
        return a == b
    index = b.index("--hostname")  # a test names each worker node; the docs need not
    return a == b[:index] + b[index + 2 :]
