"""Enqueue after commit for SQLAlchemy sessions (``pip install "unijob[sqlalchemy]"``)::

    from unijob.contrib.sqlalchemy import transaction

    with Session(engine) as session, transaction(session):
        session.add(order)
        session.flush()
        send_receipt.set(after_commit=True).perform_later(order.id)  # waits...
        session.commit()  # ...and is sent here; a rollback drops it

Which transaction a job waits for is said explicitly: inside ``with transaction(session):``, a
job asked to wait (``set(after_commit=True)``, or every job with the ``enqueue_after_commit``
setting) waits for that session's transaction, the one in progress or, when none is, the next
one the session begins in the block. The session is held in a context variable, so each thread
and each asyncio task has its own (``asyncio.to_thread``, and so ``aperform_later``, carries it
along); outside any block nothing waits. In FastAPI, bind it in an ``async def`` dependency with
``yield`` (its endpoint, sync or async, sees it); a sync one runs each step in a thread of its own,
which the block detects and refuses (``ConfigurationError``). The rules, with SQLAlchemy's events:

- the outermost transaction commits (``after_commit``): the jobs are sent, single ones one by
  one and ``perform_all_later``/``unijob.bulk()``/batch ones in bulk, as they would have been;
- it rolls back (``after_rollback``, ``after_soft_rollback``): the jobs are dropped, never sent;
  each records a ``TransactionRolledBackError`` as its ``enqueue_error`` (a batch counts them
  withdrawn);
- the session is closed without a commit: dropped if the transaction wrote (an add, a delete, a
  flush, a statement that is not a SELECT, changes pending at the enqueue), sent if it only read
  (it began after the data was committed, as when ``order.id`` is read again after ``commit()``);
- a SAVEPOINT (``session.begin_nested()``) that rolls back drops the jobs enqueued inside it;
  one that is released hands them to the enclosing transaction;
- the block raises: the jobs it enqueued are dropped, as in ``unijob.bulk()``;
- the block ends with no transaction in progress (the session did nothing after the enqueue):
  there is nothing to wait for, so the jobs are sent then.

A job that cannot be sent after the commit (the broker is down) records the error as its
``enqueue_error`` and is logged; ``commit()`` does not raise for it, since the data is committed.
An ``AsyncSession`` is used through its ``sync_session``: the jobs are sent while
``await session.commit()`` ends, from the event loop's thread.

Importing this module registers the provider with :mod:`unijob.transactions` and its listeners
on SQLAlchemy's ``Session`` class (every session, whatever its ``sessionmaker``).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Final, TypeVar, cast

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, scoped_session

from unijob import transactions
from unijob.errors import ConfigurationError, EnqueueError

__all__ = ["PROVIDER", "SessionProvider", "bound_session", "install", "transaction", "uninstall"]

logger = logging.getLogger("unijob")
INFO_KEY: Final = "unijob_waiting_jobs"  # in session.info
_S = TypeVar("_S")


class _Binding:
    """One ``transaction(session)`` block: the session, and the jobs it enqueued."""

    __slots__ = ("session",)

    def __init__(self, session: Session) -> None:
        self.session = session


@dataclasses.dataclass(frozen=True)
class _Waiting:
    """What one enqueue (a job, or a bulk of them) left with the session: the callbacks of
    :func:`unijob.transactions.defer`, the block it came from, and the innermost SAVEPOINT open."""

    binding: _Binding
    savepoint: SessionTransaction | None
    on_commit: Callable[[], object]
    on_rollback: Callable[[], object]


@dataclasses.dataclass
class _SessionState:
    waiting: list[_Waiting] = dataclasses.field(default_factory=list)
    settling: bool = False  # the transaction just ended: a job enqueued now has nothing to wait for
    # The outermost transaction in progress wrote (or meant to: an add, a delete, a flush, a
    # statement that is not a SELECT), or was rolled back. Reset when it ends.
    wrote: bool = False
    rolled_back: bool = False


def _state(session: Session) -> _SessionState:
    state = session.info.get(INFO_KEY)
    if state is None:
        state = session.info[INFO_KEY] = _SessionState()
    return cast(_SessionState, state)


_bound: contextvars.ContextVar[_Binding | None] = contextvars.ContextVar("unijob_sqlalchemy_session", default=None)


class SessionProvider:
    """The transaction provider: the session bound by :func:`transaction` in this context."""

    def defer(self, on_commit: Callable[[], object], on_rollback: Callable[[], object]) -> bool:
        binding = _bound.get()
        if binding is None:
            return False
        session = binding.session
        state = _state(session)
        if state.settling:
            return False
        if session.new or session.dirty or session.deleted:
            state.wrote = True  # changes made before the enqueue, not flushed yet
        state.waiting.append(_Waiting(binding, session.get_nested_transaction(), on_commit, on_rollback))
        return True


PROVIDER: Final = SessionProvider()


@contextlib.contextmanager
def transaction(session: _S) -> Iterator[_S]:
    """Bind ``session`` to this thread or task for the block: jobs enqueued in it with
    ``after_commit`` wait for the session's commit. ``session`` is a ``Session``, an
    ``AsyncSession``, or a ``scoped_session`` (Flask-SQLAlchemy's ``db.session``: the session of
    the current scope). Yields ``session``. Blocks nest; the innermost session is the one jobs
    wait for. If the block raises, the jobs it enqueued are dropped."""
    binding = _Binding(_sync_session(session))
    token = _bound.set(binding)
    failed = False
    try:
        yield session
    except BaseException:
        failed = True
        raise
    finally:
        try:
            _bound.reset(token)
        except ValueError:  # exited in another context than it was entered in
            raise ConfigurationError(
                "unijob.contrib.sqlalchemy.transaction() ended in another context than it began in, so the jobs of "
                "the block did not see the session (FastAPI runs each step of a sync dependency with yield in a "
                "thread of its own): use it in an 'async def' dependency, or as a with block where the work is done"
            ) from None
        if failed:
            _settle(binding.session, commit=False, which=lambda entry: entry.binding is binding)
        elif not binding.session.in_transaction():  # nothing left to wait for
            _settle(binding.session, commit=True, which=lambda entry: entry.binding is binding)


def _sync_session(session: object) -> Session:
    if isinstance(session, scoped_session):
        session = session()
    sync = getattr(session, "sync_session", session)  # an AsyncSession runs on a Session
    if not isinstance(sync, Session):
        raise TypeError(
            f"unijob.contrib.sqlalchemy.transaction takes a SQLAlchemy Session, AsyncSession or scoped_session, not {session!r}"
        )
    return sync


def bound_session() -> Session | None:
    """The session that jobs enqueued here would wait for (None outside a :func:`transaction` block)."""
    binding = _bound.get()
    return None if binding is None else binding.session


def _settle(session: Session, *, commit: bool, which: Callable[[_Waiting], bool] | None = None) -> None:
    """Send (``commit``) or drop the jobs waiting on the session: all of them, or ``which``."""
    state = session.info.get(INFO_KEY)
    if not state or not state.waiting:
        return
    if which is None:
        settled, state.waiting = state.waiting, []
    else:
        settled = [entry for entry in state.waiting if which(entry)]
        state.waiting = [entry for entry in state.waiting if not which(entry)]
    state.settling = True
    try:
        for entry in settled:
            try:
                (entry.on_commit if commit else entry.on_rollback)()
            except EnqueueError:
                pass  # recorded on the job and logged by unijob; the commit stands
            except Exception:
                logger.exception("A job that waited for the SQLAlchemy commit could not be enqueued after it")
    finally:
        state.settling = False


def _inside(candidate: SessionTransaction | None, savepoint: SessionTransaction) -> bool:
    while candidate is not None:
        if candidate is savepoint:
            return True
        candidate = candidate.parent
    return False


def _after_commit(session: Session) -> None:
    if session.info.get(INFO_KEY) is None:
        return
    if session.get_nested_transaction() is not None:
        return  # a SAVEPOINT was released: its jobs now wait for the transaction around it
    _settle(session, commit=True)


def _after_rollback(session: Session) -> None:
    # The database rolled back: the outermost transaction, unless a SAVEPOINT is still open (its
    # own rollback, which after_soft_rollback handles).
    if session.get_nested_transaction() is None:
        _state(session).rolled_back = True


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    if session.info.get(INFO_KEY) is None:
        return
    if previous.nested:
        _settle(session, commit=False, which=lambda entry: _inside(entry.savepoint, previous))
    else:
        _settle(session, commit=False)


def _after_transaction_end(session: Session, ended: SessionTransaction) -> None:
    """The outermost transaction ended. After a commit nothing waits any more (after_commit sent
    it). Otherwise it was rolled back, or the session was closed: what waited is dropped if the
    transaction wrote, and sent if it only read (it began after the data was committed, as when
    ``order.id`` is read again after ``commit()``)."""
    state = session.info.get(INFO_KEY)
    if ended.parent is not None or state is None:
        return
    try:
        _settle(session, commit=not (state.wrote or state.rolled_back))
    finally:
        state.wrote = state.rolled_back = False


def _wrote(session: Session, *_: object) -> None:
    _state(session).wrote = True


def _executed(orm_execute_state: ORMExecuteState) -> None:
    if not orm_execute_state.is_select:
        _state(orm_execute_state.session).wrote = True


_LISTENERS: Final[tuple[tuple[str, Callable[..., None]], ...]] = (
    ("after_commit", _after_commit),
    ("after_rollback", _after_rollback),
    ("after_soft_rollback", _after_soft_rollback),
    ("after_transaction_end", _after_transaction_end),
    ("after_attach", _wrote),  # add, delete, merge (loading an object does not attach it this way)
    ("after_flush", _wrote),
    ("do_orm_execute", _executed),
)


def install() -> None:
    """Register the provider and the session listeners (done on import; idempotent)."""
    for name, listener in _LISTENERS:
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)
    transactions.register(PROVIDER)


def uninstall() -> None:
    """Undo :func:`install`: jobs no longer wait for SQLAlchemy sessions."""
    transactions.unregister(PROVIDER)
    for name, listener in _LISTENERS:
        if event.contains(Session, name, listener):
            event.remove(Session, name, listener)


install()
