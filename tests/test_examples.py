"""The batches guide's CSV import, end to end on the test adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

import unijob
from examples import csv_import
from unijob.adapters.test import TestAdapter


def test_csv_import_reports_failed_rows_when_the_batch_finishes(
    unijob_test: TestAdapter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(csv_import, "CHUNK_ROWS", 2)
    people = tmp_path / "people.csv"
    people.write_text("name,email\nAda,ada@example.com\nBob,bob-at-example\nCy,cy@example.com\nDee,\nEve,eve@example.com\n")

    batch = csv_import.import_csv(people, "owner@example.com")
    unijob_test.assert_enqueued(csv_import.ImportRows, count=3, queue="imports")
    unijob_test.perform_enqueued_jobs()

    finished = unijob.Batch.find(batch.id)
    assert (finished.is_succeeded, finished.total) == (True, 3)
    report = (tmp_path / "import-reports" / f"{batch.id}.csv").read_text().splitlines()
    assert report == ["line,error", "3,invalid email 'bob-at-example'", "5,invalid email ''"]
    assert "to owner@example.com: Your import of people.csv finished: 3 chunks, 2 rows failed" in capsys.readouterr().out
