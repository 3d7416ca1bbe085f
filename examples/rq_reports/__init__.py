"""A small RQ project as a team has it before unijob: a reports feature with a status screen.

    rq_reports/settings.py   where the Redis servers are (from the environment)
    rq_reports/tasks.py      the functions RQ runs; each leaves its outcome in the reports store
    rq_reports/app.py        the call sites: Queue.enqueue, enqueue_in, retry=Retry(...), @job(...).delay
    rq_reports/status.py     the status screen: Job.fetch(id).get_status() and return_value()

Run it from the examples/ folder, with RQ's stock worker::

    rq worker --with-scheduler --url redis://localhost:6379/0 default
    python -c "from rq_reports import app, status; print(status.report_status(app.request_report('r-1')))"

docs/migrating-from-rq.md moves it to unijob one small step at a time, and
tests/examples/test_rq_migration.py runs every step of it on the stock workers.
"""
