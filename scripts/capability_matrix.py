"""Write the README's capability matrix from the adapters' capability flags (one source of truth).

python scripts/capability_matrix.py           # rewrite the table in README.md
python scripts/capability_matrix.py --check   # exit 1 if README.md is out of date (the tests run this)
"""

from __future__ import annotations

import sys
from pathlib import Path

from unijob.adapters import adapter_class

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- capability-matrix:begin -->", "<!-- capability-matrix:end -->"

# One row per backend and broker: adapters narrow their flags by broker URL, never connecting here.
ROWS = [
    ("huey (SQLite, the default)", "huey", None, {"path": "/tmp/unijob-matrix.sqlite3"}),
    ("huey (Redis)", "huey", "redis://localhost:6379/0", {}),
    ("celery (Redis)", "celery", "redis://localhost:6379/0", {}),
    ("celery (RabbitMQ)", "celery", "amqp://guest:guest@localhost:5672//", {}),
    ("rq (Redis)", "rq", "redis://localhost:6379/0", {}),
    ("dramatiq (Redis)", "dramatiq", "redis://localhost:6379/0", {}),
    ("dramatiq (RabbitMQ)", "dramatiq", "amqp://guest:guest@localhost:5672/", {}),
    ("inline", "inline", None, {}),
    ("test", "test", None, {}),
]


def render() -> str:
    lines = [
        "| adapter | delay | long delays | priority | time limit | native bulk | recurring jobs from | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, name, url, options in ROWS:
        caps = adapter_class(name)(url=url, options=options).capabilities
        long_delays = "native" if caps.max_hold is None else f"hop every {_duration(caps.max_hold.total_seconds())}"
        row = [label, _yes(caps.delay), long_delays, _yes(caps.priority), _yes(caps.timeout), _yes(caps.native_bulk)]
        lines.append("| " + " | ".join([*row, caps.recurring_from, caps.notes]) + " |")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 and unit != 'min' else ''}"
    return f"{seconds:g} s"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def updated(readme: str) -> str:
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{render()}\n{END}{tail}"


def main() -> int:
    current = README.read_text()
    fresh = updated(current)
    if "--check" in sys.argv:
        if fresh != current:
            print("README.md's capability matrix is out of date: run python scripts/capability_matrix.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
