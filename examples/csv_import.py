"""The batches guide's example: import a CSV with one job per chunk of rows; when every chunk has
finished, ``on_finish`` writes a report of the failed rows and notifies the user.

Run it on the embedded backend with a worker::

    python -m examples.csv_import people.csv     # enqueues the batch
    UNIJOB_IMPORTS=examples.csv_import unijob worker --burst
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import unijob

CHUNK_ROWS = 500
REPORTS = Path("import-reports")


class RowError(Exception):
    """A row that cannot be imported: recorded, not retried."""


def save_person(row: dict[str, str]) -> None:
    """Stands in for the application's database write."""
    if "@" not in row.get("email", ""):
        raise RowError(f"invalid email {row.get('email')!r}")


class ImportRows(unijob.Job):
    queue = "imports"
    retry_on = unijob.retry_on(ConnectionError, wait=unijob.polynomial, attempts=5)  # the database blinked

    def perform(self, first_line: int, rows: list[dict[str, str]]) -> None:
        failed = []
        for line, row in enumerate(rows, start=first_line):
            try:
                save_person(row)
            except RowError as error:
                failed.append({"line": line, "error": str(error)})
        if failed:
            batch = self.batch
            assert batch is not None
            # Several chunks may finish at once: each keeps its failures under its own key.
            batch.properties[f"failed:{first_line}"] = failed
            batch.save()


@unijob.job(queue="imports")
def import_finished(batch: unijob.Batch, event: str) -> None:
    failures = sorted(
        (failure for key, value in batch.properties.items() if key.startswith("failed:") for failure in value),
        key=lambda failure: failure["line"],
    )
    REPORTS.mkdir(exist_ok=True)
    report = REPORTS / f"{batch.id}.csv"
    with report.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["line", "error"])
        writer.writeheader()
        writer.writerows(failures)
    notify(
        batch.properties["user_email"],
        f"Your import of {batch.properties['file']} finished: {batch.total} chunks, "
        f"{len(failures)} rows failed, {batch.discarded} chunks could not run. Report: {report}",
    )


def notify(email: str, message: str) -> None:
    """Stands in for the application's mailer."""
    print(f"to {email}: {message}")


def import_csv(path: Path, user_email: str) -> unijob.Batch:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    chunks = [rows[start : start + CHUNK_ROWS] for start in range(0, len(rows), CHUNK_ROWS)]
    with unijob.batch(on_finish=import_finished, user_email=user_email, file=path.name) as batch:
        for index, chunk in enumerate(chunks):
            ImportRows.perform_later(2 + index * CHUNK_ROWS, chunk)  # line 1 is the header
    return batch


if __name__ == "__main__":
    print(import_csv(Path(sys.argv[1]), "owner@example.com").id)
