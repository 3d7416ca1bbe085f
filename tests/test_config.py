"""Configuration sources, named backends, and the backend alias table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import unijob
from unijob import config
from unijob.adapters import ALIASES, _Alias
from unijob.adapters.inline import InlineAdapter
from unijob.adapters.test import TestAdapter
from unijob.constants import DEFAULT_ADAPTER, DEFAULT_BACKEND


@unijob.job(backend="reports")
def build_report(report_id: int) -> int:
    return report_id


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("UNIJOB_ADAPTER", "UNIJOB_URL", "UNIJOB_IMPORTS", "UNIJOB_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_default_is_the_embedded_backend(project: Path) -> None:
    assert config.load_settings().backends[DEFAULT_BACKEND].adapter == DEFAULT_ADAPTER == "huey"


def test_pyproject_table(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        """
[tool.unijob]
adapter = "test"
url = "redis://localhost/1"
imports = ["app.jobs"]
log_arguments = false
on_unsupported = "warn"

[tool.unijob.options]
visibility_timeout = 60

[tool.unijob.backends.reports]
adapter = "inline"
""",
    )
    (project / "sub").mkdir()
    loaded = config.load_settings(project / "sub")  # found from a subfolder too
    assert loaded.backends["default"] == config.BackendSettings("test", "redis://localhost/1", {"visibility_timeout": 60})
    assert loaded.backends["reports"].adapter == "inline"
    assert (loaded.imports, loaded.log_arguments, loaded.on_unsupported) == (("app.jobs",), False, "warn")


def test_environment_overrides_pyproject(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "pyproject.toml").write_text('[tool.unijob]\nadapter = "inline"\nimports = ["a"]\n')
    monkeypatch.setenv("UNIJOB_ADAPTER", "test")
    monkeypatch.setenv("UNIJOB_URL", "redis://:secret@localhost/2")
    monkeypatch.setenv("UNIJOB_IMPORTS", "app.jobs, app.more")
    monkeypatch.setenv("UNIJOB_OPTIONS", '{"path": "x.db"}')
    loaded = config.load_settings()
    assert loaded.backends["default"] == config.BackendSettings("test", "redis://:secret@localhost/2", {"path": "x.db"})
    assert loaded.imports == ("app.jobs", "app.more")
    monkeypatch.setenv("UNIJOB_OPTIONS", "{not json")
    with pytest.raises(unijob.ConfigurationError, match="UNIJOB_OPTIONS must be a JSON object"):
        config.load_settings()


def test_configure_in_code_wins_and_named_backends_route_jobs(project: Path) -> None:
    unijob.configure("test", backends={"reports": {"adapter": "inline"}})
    default, reports = unijob.get_adapter(), unijob.get_adapter("reports")
    assert isinstance(default, TestAdapter) and isinstance(reports, InlineAdapter)
    assert unijob.get_adapter() is default  # built once

    assert build_report.perform_now(1) == 1
    build_report.perform_later(2)  # backend="reports": runs inline, never reaches the test adapter
    build_report.set(backend="default").perform_later(3)
    assert [job.args for job in default.enqueued_jobs] == [(3,)]


def test_an_unconfigured_backend_name_is_a_clear_error(project: Path) -> None:
    unijob.configure("test")
    with pytest.raises(unijob.ConfigurationError, match="no backend named 'reports' is configured"):
        build_report.perform_later(1)


def test_a_backend_typo_suggests_the_right_name(project: Path) -> None:
    with pytest.raises(unijob.ConfigurationError, match="unknown unijob adapter 'dramatic'; did you mean 'dramatiq'?"):
        unijob.configure("dramatic")


def test_a_missing_library_says_which_pip_install_fixes_it(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "needs_missing_lib.py").write_text("import a_queue_library_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.setitem(ALIASES, "fancy", _Alias("needs_missing_lib", "FancyAdapter", "fancy"))
    unijob.configure("fancy")
    with pytest.raises(unijob.BackendNotInstalledError, match=r'pip install "unijob\[fancy\]"'):
        unijob.get_adapter()
    sys.modules.pop("needs_missing_lib", None)


def test_custom_adapter_by_import_path(project: Path) -> None:
    unijob.configure("unijob.adapters.test:TestAdapter")
    assert isinstance(unijob.get_adapter(), TestAdapter)


def test_unsupported_options_raise_or_warn_as_configured(project: Path) -> None:
    class NoPriority(InlineAdapter):
        capabilities = unijob.adapters.base.Capabilities(delay=False, priority=False)

    @unijob.job
    def noop() -> None: ...

    with config.override(NoPriority(alias="default")):
        with pytest.raises(
            unijob.UnsupportedOptionError, match="the inline adapter \\(backend 'default'\\) cannot honour priority=5"
        ):
            noop.set(priority=5).perform_later()
        with pytest.raises(unijob.UnsupportedOptionError, match="cannot honour a delay"):
            noop.set(wait=5).perform_later()
    with config.override(NoPriority(alias="default"), on_unsupported="warn"):
        with pytest.warns(RuntimeWarning, match="cannot honour priority=5"):
            job = noop.set(priority=5).perform_later()
        assert job.successfully_enqueued and job.priority is None


def test_override_restores_the_previous_configuration(project: Path) -> None:
    unijob.configure("inline")
    with unijob.override(adapter="test"):
        assert isinstance(unijob.get_adapter(), TestAdapter)
    assert isinstance(unijob.get_adapter(), InlineAdapter)


def test_urls_are_shown_without_passwords() -> None:
    adapter = TestAdapter(url="redis://user:hunter2@localhost:6379/0")
    assert adapter.safe_url == "redis://user:***@localhost:6379/0"
    assert "hunter2" not in repr(adapter)


def test_a_case_typo_suggests_the_right_name(project: Path) -> None:
    with pytest.raises(unijob.ConfigurationError, match="unknown unijob adapter 'Rq'; did you mean 'rq'?"):
        unijob.configure("Rq")


@pytest.mark.parametrize(
    ("adapter", "url", "message"),
    [
        ("rq", "http://localhost:6379/0", "the rq adapter takes a redis://, rediss://, unix:// URL, not http://localhost"),
        ("celery", "http://localhost:6379/0", "the celery adapter takes a SLMQ://, SQS://, amqp://"),
        ("dramatiq", "http://localhost", "the dramatiq adapter takes a amqp://, amqps://, redis://"),
        ("huey", "amqp://localhost", "the huey adapter takes a redis://, rediss://, sqlite://, unix:// URL"),
    ],
)
def test_a_wrong_url_scheme_is_a_configuration_error(project: Path, adapter: str, url: str, message: str) -> None:
    unijob.configure(adapter, url)
    with pytest.raises(unijob.ConfigurationError) as raised:
        unijob.get_adapter()
    assert str(raised.value).startswith(message), raised.value


def test_a_custom_adapter_that_does_not_exist_is_a_configuration_error(project: Path) -> None:
    unijob.configure("myapp.queues:FancyAdapter")
    with pytest.raises(unijob.ConfigurationError, match="adapter 'myapp.queues:FancyAdapter': cannot import 'myapp.queues'"):
        unijob.get_adapter()
    unijob.configure("unijob.adapters.test:NoSuchAdapter")
    with pytest.raises(unijob.ConfigurationError, match="unijob.adapters.test has no Adapter subclass named 'NoSuchAdapter'"):
        unijob.get_adapter()


def test_huey_on_redis_without_redis_py_says_which_pip_install(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # as if redis-py were not installed
    unijob.configure("huey", "redis://localhost:6379/0")
    with pytest.raises(unijob.BackendNotInstalledError, match=r'pip install "unijob\[huey\]"'):
        unijob.perform_all_later([build_report.set(backend="default").new(1)])
        raise AssertionError("the bulk enqueue should have reported the missing library")


def test_a_stronger_source_that_changes_the_adapter_leaves_the_weaker_ones_options_behind(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "pyproject.toml").write_text(
        '[tool.unijob]\nadapter = "huey"\nurl = "redis://localhost/3"\n[tool.unijob.options]\npath = "x.db"\n'
    )
    monkeypatch.setenv("UNIJOB_ADAPTER", "celery")
    loaded = config.load_settings()
    assert loaded.backends["default"] == config.BackendSettings("celery", "redis://localhost/3", {})
    monkeypatch.setenv("UNIJOB_ADAPTER", "huey")  # the same adapter keeps its options
    assert config.load_settings().backends["default"].options == {"path": "x.db"}


def test_an_old_or_mistyped_setting_is_refused(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "pyproject.toml").write_text('[tool.unijob]\nbackend = "rq"\n')
    with pytest.raises(unijob.ConfigurationError, match="the key is adapter = 'rq'"):
        config.load_settings()
    (project / "pyproject.toml").write_text('[tool.unijob]\nimport = ["app.jobs"]\n')
    with pytest.raises(unijob.ConfigurationError, match="unknown key 'import' in \\[tool.unijob\\]; did you mean 'imports'?"):
        config.load_settings()
    (project / "pyproject.toml").write_text("")
    monkeypatch.setenv("UNIJOB_BACKEND", "rq")
    with pytest.raises(unijob.ConfigurationError, match="UNIJOB_BACKEND is not a unijob setting; .* UNIJOB_ADAPTER"):
        config.load_settings()


def test_an_unknown_adapter_option_is_refused_on_every_adapter(project: Path) -> None:
    for adapter, url in [
        ("rq", None),
        ("celery", "redis://localhost:6379/1"),
        ("dramatiq", None),
        ("huey", None),
        ("inline", None),
    ]:
        unijob.configure(adapter, url, job_timout=5)
        with pytest.raises(unijob.ConfigurationError, match=f"unknown option.* 'job_timout'.* for the {adapter} adapter"):
            unijob.get_adapter()
    unijob.configure("rq", job_timout=5)
    with pytest.raises(unijob.ConfigurationError, match="'job_timout' \\(did you mean 'job_timeout'\\?\\)"):
        unijob.get_adapter()


def test_a_route_moves_a_job_to_another_backend_on_every_call_or_on_a_share_of_them(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        f"""
[tool.unijob]
adapter = "test"
[tool.unijob.backends.new]
adapter = "inline"
[tool.unijob.routes]
"{build_report.name}" = "default"
"{__name__}.rolled_out" = {{ backend = "new", percent = 30 }}
"""
    )
    config.reset()
    default = unijob.get_adapter()
    assert isinstance(default, TestAdapter)
    build_report.perform_later(1)  # its own backend is "reports": the route sends it to "default"
    build_report.set(backend="new").perform_later(2)  # a backend chosen with set() wins over a route
    assert [job.args for job in default.enqueued_jobs] == [(1,)]
    for n in range(1000):
        rolled_out.perform_later(n)
    moved = 1000 - len(default.enqueued_jobs) + 1
    assert 200 < moved < 400  # about 30 % ran inline on "new"
    with pytest.raises(unijob.ConfigurationError, match="route 'x' names backend 'nowhere', which is not configured"):
        unijob.configure(routes={"x": "nowhere"})
    with pytest.raises(unijob.ConfigurationError, match="percent must be from 0 to 100"):
        unijob.configure(routes={"x": {"backend": "new", "percent": 150}})


@unijob.job
def rolled_out(n: int) -> int:
    return n
