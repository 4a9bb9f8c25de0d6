"""SqliteStore: the Store contract on one SQLite file (WAL, one connection per process).

Writers take the lock up front (BEGIN IMMEDIATE) so transactions never deadlock on an upgrade,
and wait for each other in short steps (see _execute). All SQL is in queries.sql beside this file.

The file is reached through APSW, which bundles its own SQLite, never through the standard
library's sqlite3, which uses the system's: SQLite 3.7.0 to 3.51.2 have the WAL-reset bug
(sqlite.org/wal.html#walresetbug), a race between a checkpoint and a commit that corrupts the
file. Every worker checkpoints several times a second (upkeep), which made it happen here: a
chaos run's file lost an index entry. The bundled SQLite is pinned past the fix (pyproject.toml),
and a test checks the version in use (docs/durability.md).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import apsw

from queuectl import activity, errors, models, paths
from queuectl.store import common, sqlfile
from queuectl.store import migrate as migrations
from queuectl.store.sqlite import wakeup

_Q = {name: q.sql for name, q in sqlfile.load(__package__ or "queuectl.store.sqlite").items()}
_SYNCHRONOUS = {True: "PRAGMA synchronous = FULL", False: "PRAGMA synchronous = NORMAL"}
BUSY_TIMEOUT_MS = 60_000
"""How long a writer waits for the write lock before giving up."""
RESTART_LOG_FRAMES = 1000
"""Log length (pages) at which upkeep() starts the write-ahead log over (SQLite's default)."""
WAIT_POLL = 0.05
"""Seconds between two reads of the states of the jobs `wait` waits for."""
DEFERRED_CHECKPOINT_FRAMES = 4 * RESTART_LOG_FRAMES
"""Log length at which a defer_upkeep() connection checkpoints after all (upkeep fell behind)."""


def _us(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def _maybe_dt(us: int | None) -> datetime | None:
    return None if us is None else _dt(us)


def _json_list(items: Sequence[str] | None) -> str | None:
    return None if items is None else json.dumps(list(items))


_DECODE = common.Decode(time=_dt, json=json.loads)


def _create_private(path: str) -> None:
    """Create the database file readable by its owner only, before SQLite opens it."""
    if os.path.exists(path):  # noqa: PTH110 - os.path: pathlib costs the CLI 4 ms to import
        return
    parent = os.path.dirname(path)  # noqa: PTH120
    if parent:
        paths.make_private_dirs(parent)  # every level owner-only, whatever the umask
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _identity(path: str) -> tuple[int, int] | None:
    """Which file `path` names now (device and inode); None when it names none."""
    try:
        info = os.stat(path)  # noqa: PTH116 - pathlib costs the CLI 4 ms to import
    except FileNotFoundError:
        return None
    except OSError:
        return (-1, -1)  # cannot tell (EACCES, EIO, ESTALE): see still_current
    return info.st_dev, info.st_ino


Row = dict[str, Any]

_DAMAGED = (apsw.CorruptError, apsw.NotADBError)
"""Not a SQLite file, or one whose pages are damaged: said so when the store opens it."""

_UNAVAILABLE = (
    apsw.BusyError,
    apsw.LockedError,
    apsw.FullError,
    apsw.IOError,
    apsw.CantOpenError,
    apsw.ReadOnlyError,
    apsw.PermissionsError,
    apsw.ProtocolError,
    apsw.NoMemError,
    apsw.CorruptError,
    apsw.NotADBError,
    apsw.SQLError,
)
"""What the file, its lock or its schema did (full, busy, unreadable, damaged, a table gone):
the store is unavailable. The standard library's sqlite3 said OperationalError to most of these."""


def _row(cursor: apsw.Cursor, values: apsw.SQLiteValues) -> Row:
    """Every result row by column name, as psycopg's dict rows are."""
    return dict(zip([column[0] for column in cursor.get_description()], values, strict=True))


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into complete statements."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if apsw.complete(buffer):
            yield buffer
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") for part in buffer.strip().splitlines()
    ):
        raise ValueError("migration ends with an incomplete statement")


def _rows(cursor: apsw.Cursor) -> list[Row]:
    """Every row of a statement, so that it is done: see SqliteStore._one."""
    return cast("list[Row]", cursor.fetchall())  # the connection's row_trace is _row


@contextlib.contextmanager
def _unavailable_on_error(path: str) -> Iterator[None]:
    """Turn an operational failure (disk full, I/O error, locked too long) into StoreUnavailable."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise errors.StoreUnavailable(f"db: {path}: {exc}") from exc


class SqliteStore:
    """The Store contract on a SQLite file."""

    def __init__(self, path: str | os.PathLike[str], create: bool = True) -> None:
        self.path = path = os.fspath(path)
        if not create and not os.path.exists(path):  # noqa: PTH110 - see _create_private
            raise errors.StoreUnavailable(f"db: {path} does not exist (was it deleted?)")
        try:
            _create_private(path)
            # busy_timeout 0: every wait for the lock is ours (see _execute)
            self._db = apsw.Connection(path)
        except (OSError, apsw.Error) as exc:
            raise errors.StoreUnavailable(f"db: cannot open {path}: {exc}") from None
        self._db.row_trace = _row
        self._listener: wakeup.Listener | None = None
        self._durable = True
        self._identity = _identity(path)
        try:
            # WAL is persistent; switching needs an exclusive lock, so several processes opening
            # a fresh file at once wait for each other in _execute.
            if self._first("PRAGMA journal_mode")["journal_mode"] != "wal":
                self._first("PRAGMA journal_mode = WAL")
            self._db.execute(_SYNCHRONOUS[True])
            self._db.execute("PRAGMA foreign_keys = ON")
        except apsw.Error as exc:
            self._db.close()
            passing = isinstance(exc, _UNAVAILABLE) and not isinstance(exc, _DAMAGED)
            what = f"{path}:" if passing else f"{path} is not a usable SQLite file:"
            raise errors.StoreUnavailable(f"db: {what} {exc}") from None

    # --- helpers -------------------------------------------------------------
    def _now_us(self) -> int:
        return time.time_ns() // 1000

    @contextlib.contextmanager
    def _write(self, durable: bool = True) -> Iterator[apsw.Connection]:
        """One write transaction, holding the write lock from its start.

        A durable transaction is on disk when it commits (synchronous=FULL: the WAL is synced,
        with every commit before it). A non-durable one (NORMAL) may be lost with a power cut,
        never corrupted: used for what a crash makes moot anyway (claims, heartbeats, worker
        rows) and for recording attempts, which at worst are redone (see docs/durability.md).
        """
        with _unavailable_on_error(self.path):
            if durable is not self._durable:
                self._db.execute(_SYNCHRONOUS[durable])
                self._durable = durable
            self._begin()
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # SQLITE_FULL may have rolled back already; a failed COMMIT may not have.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _begin(self) -> None:
        self._execute("BEGIN IMMEDIATE", {})

    def _first(self, sql: str) -> Row:
        """The first row of a statement without parameters (a PRAGMA)."""
        return _rows(self._execute(sql, {}))[0]

    def _execute(self, sql: str, params: dict[str, Any]) -> apsw.Cursor:
        """Run one statement; while another writer holds the lock, wait in steps of 50 µs and up.

        The connection's busy_timeout is 0: SQLite's own busy handler sleeps at least 1 ms per
        try, longer than most of our transactions, which cost two busy workers a quarter of their
        throughput (and some statements, like switching to WAL, never call it). Inside our own
        write transaction nothing waits (we hold the lock).
        """
        deadline = None
        delay = 0.00005
        while True:
            try:
                return self._db.execute(sql, params)
            except (apsw.BusyError, apsw.LockedError):
                if self._db.in_transaction:
                    raise
                now = time.monotonic()
                deadline = deadline or now + BUSY_TIMEOUT_MS / 1000
                if now >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.002)

    def _one(self, name: str, /, **params: Any) -> Row | None:
        # Every row is read, so that the statement is done (a RETURNING one counts its changes
        # then) and holds no read snapshot or lock past this call.
        rows = self._all(name, **params)
        return rows[0] if rows else None

    def _all(self, name: str, /, **params: Any) -> list[Row]:
        with _unavailable_on_error(self.path):
            return _rows(self._execute(_Q[name], params))

    def _run(self, name: str, /, **params: Any) -> int:
        """Run a statement without result rows; how many rows it changed."""
        with _unavailable_on_error(self.path):
            self._execute(_Q[name], params).fetchall()
            return self._db.changes()

    # --- lifecycle -------------------------------------------------------------
    def migrate(self) -> None:
        known = migrations.discover("queuectl.store.sqlite")
        try:
            applied = {row["version"] for row in self._all("select_schema_versions")}
            if not migrations.pending(known, applied):
                return
        except errors.StoreUnavailable:
            pass  # no version table yet (or busy: the write below waits its turn)
        with self._write():
            self._run("create_schema_version")
            applied = {row["version"] for row in self._all("select_schema_versions")}
            for migration in migrations.pending(known, applied):
                for statement in _statements(migration.sql):
                    self._db.execute(statement)
                self._run(
                    "insert_schema_version",
                    version=migration.version,
                    name=migration.name,
                    now=self._now_us(),
                )
            # A migration may edit the schema's text in place (writable_schema): a new schema
            # version makes every connection, this one too, read the schema again.
            version = self._first("PRAGMA schema_version")["schema_version"]
            self._db.execute(f"PRAGMA schema_version = {int(version) + 1}")

    def close(self) -> None:
        if self._listener is not None:
            wakeup.close_listener()
            self._listener = None
        self._db.close()

    def still_current(self) -> bool:
        now = _identity(self.path)
        if now == (-1, -1):
            return True  # a passing error of the file system is not a replaced file
        return self._identity is not None and now == self._identity

    def now(self) -> datetime:
        return _dt(self._now_us())

    def defer_upkeep(self) -> None:
        # A checkpoint copies the log into the file and syncs both: milliseconds, which the
        # commit that crosses the threshold would otherwise pay (see docs/benchmarks.md). The
        # higher threshold stays as a safety net, should upkeep() fall behind.
        self._db.execute(f"PRAGMA wal_autocheckpoint = {DEFERRED_CHECKPOINT_FRAMES}")

    def upkeep(self) -> None:
        with _unavailable_on_error(self.path):
            # PASSIVE copies what it can without blocking writers. Under constant writes it
            # never catches up with the log's end, so the log would never start over; once it
            # is long, RESTART finishes the (now short) copy in a moment when no writer is
            # active, so that the next commit starts the log from the beginning. Neither waits:
            # a checkpoint waiting for a writer would hold off the writers' own checkpoints.
            frames = self._first("PRAGMA wal_checkpoint(PASSIVE)")["log"]
            if frames >= RESTART_LOG_FRAMES:
                self._first("PRAGMA wal_checkpoint(RESTART)")

    def compact_counts(self) -> None:
        pass  # the counts table holds one row per queue and state, updated in place

    # --- jobs: write path --------------------------------------------------------
    def enqueue(self, jobs: Sequence[models.NewJob]) -> None:
        batch = json.dumps(
            [
                [
                    job.id,
                    job.command,
                    job.queue,
                    job.priority,
                    job.max_retries,
                    job.timeout,
                    job.cwd,
                    json.dumps(job.env) if job.env else None,
                    _us(job.run_at),
                    json.dumps(list(job.tags)) if job.tags else None,
                ]
                for job in jobs
            ],
            ensure_ascii=False,
        )
        # A NUL is escaped as \u0000 in the JSON (once more within env's own JSON): the
        # substring test of the whole batch is 8x faster than looking at every job's fields,
        # which tells a NUL from a user's literal backslash before "u0000".
        if "\\u0000" in batch and any(common.has_nul(job) for job in jobs):
            raise errors.UsageError(common.NUL_REFUSED)
        per_queue = collections.Counter(job.queue for job in jobs)
        try:
            with self._write():
                self._run("insert_jobs", rows=batch, now=self._now_us())
                self._run("count_new_jobs", counts=json.dumps(per_queue))
        except apsw.ConstraintError:
            # after the rollback, so the batch is gone
            raise common.first_duplicate(jobs, self._taken) from None
        self._wake_idle_workers()

    def _taken(self, job_id: str) -> bool:
        return self._one("select_job", job_id=job_id) is not None

    def _wake(self, rows: Sequence[Row]) -> None:
        wakeup.notify(row["wake_addr"] for row in rows)

    def _wake_idle_workers(self) -> None:
        """After a commit: tell idle workers to look.

        Best effort, never an error: the change is committed, and a worker that misses the
        wake-up still looks within poll_interval.
        """
        with contextlib.suppress(errors.StoreUnavailable):
            self._wake(self._all("wake_workers"))

    def claim(
        self, worker_id: str, host: str, queues: Sequence[str] | None, lease: float
    ) -> models.Claim | None:
        with self._write(durable=False):
            return self._claim(worker_id, host, queues, lease)

    def _claim(
        self, worker_id: str, host: str, queues: Sequence[str] | None, lease: float
    ) -> models.Claim | None:
        now = self._now_us()
        row = self._one(
            "claim_job",
            worker_id=worker_id,
            host=host,
            now=now,
            lease_expires_at=now + int(lease * 1_000_000),
            queues=_json_list(queues),
        )
        if row is None:
            return None
        return models.Claim(
            job=_DECODE.job(row), worker_id=worker_id, host=host, claimed_at=_dt(now), lease=lease
        )

    def next_run_at(self, queues: Sequence[str] | None) -> datetime | None:
        row = self._one("select_next_run_at", queues=_json_list(queues))
        return None if row is None else _maybe_dt(row["run_at"])

    def heartbeat(
        self, worker: models.WorkerInfo, claim: models.Claim | None, ttl: float
    ) -> models.HeartbeatReply:
        with self._write(durable=False):
            now = self._now_us()  # after BEGIN: a long wait for the lock must not stale it
            expires_at = now + int(ttl * 1_000_000)
            row = self._one("touch_worker", worker_id=worker.id, now=now, expires_at=expires_at)
            if row is None:
                self._upsert_worker(worker, now, expires_at)
            held = claim is not None and (
                self._run(
                    "extend_lease",
                    lease_expires_at=now + int(claim.lease * 1_000_000),
                    now=now,
                    **common.claim_key(claim),
                )
                == 1
            )
        return models.HeartbeatReply(
            stop=None if row is None else row["stop"],
            lease_held=held,
            registered_again=row is None,
        )

    def stop_requested(self, worker_id: str) -> str | None:
        row = self._one("select_worker_stop", worker_id=worker_id)
        return None if row is None else row["stop"]

    def requests(self, claim: models.Claim) -> models.Requests:
        row = self._one("select_requests", **common.claim_key(claim))
        return models.Requests() if row is None else common.requests(row)

    def clear_control(self, claim: models.Claim, control: str) -> None:
        with self._write(durable=False):
            self._run("clear_control", control=control, **common.claim_key(claim))

    def save_output(self, claim: models.Claim, output: models.LiveOutput) -> bool:
        with self._write(durable=False):
            saved = self._run(
                "upsert_live_output",
                pid=output.pid,
                stdout=output.stdout,
                stderr=output.stderr,
                stdout_total=output.stdout_total,
                stderr_total=output.stderr_total,
                now=self._now_us(),
                **common.claim_key(claim),
            )
        return saved == 1

    def finish(
        self, claim: models.Claim, outcome: models.Outcome, transition: models.Transition
    ) -> bool:
        with self._write(durable=False):
            finished = self._record(claim, outcome, transition, expired_before=None)
        self._wake_after(finished, transition)
        return finished

    def finish_and_claim(
        self,
        claim: models.Claim,
        outcome: models.Outcome,
        transition: models.Transition,
        queues: Sequence[str] | None,
        lease: float,
    ) -> tuple[bool, models.Claim | None]:
        with self._write(durable=False):
            finished = self._record(claim, outcome, transition, expired_before=None)
            following = self._claim(claim.worker_id, claim.host, queues, lease)
        self._wake_after(finished, transition)
        return finished, following

    def _record(
        self,
        claim: models.Claim,
        outcome: models.Outcome,
        transition: models.Transition,
        expired_before: int | None,
    ) -> bool:
        """Record the attempt and apply the transition, inside the caller's transaction."""
        key = common.claim_key(claim)
        inserted = self._run(
            "insert_attempt",
            pid=outcome.pid,
            started_at=_us(outcome.started_at),
            ended_at=_us(outcome.ended_at),
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            outcome=outcome.end.value,
            error=outcome.error,
            stdout=outcome.stdout,
            stderr=outcome.stderr,
            expired_before=expired_before,
            live_at=self._now_us() if expired_before is None else None,
            **key,
        )
        if inserted != 1:
            return False
        now = self._now_us()
        tally = activity.tally(outcome)
        if tally is not None:
            self._run(
                "count_attempt",
                minute=now // 60_000_000,
                bucket=tally.bucket,
                completed=tally.completed,
                failed=tally.failed,
                queue=claim.job.queue,
            )
        self._run("delete_live_output", seq=claim.job.seq)
        self._run(
            "finish_job",
            state=transition.state.value,
            attempts=transition.attempts,
            run_at=None if transition.run_at is None else _us(transition.run_at),
            last_error=transition.last_error,
            now=now,
            **key,
        )
        return True

    def _wake_after(self, changed: bool, transition: models.Transition) -> None:
        """A job that went back to waiting may be due now: tell idle workers."""
        if changed and transition.state in (models.JobState.PENDING, models.JobState.FAILED):
            self._wake_idle_workers()

    def expired_claims(self, limit: int) -> list[models.Claim]:
        found = self._all("select_expired_claims", now=self._now_us(), limit=limit)
        return [_DECODE.expired_claim(row) for row in found]

    def rescue(
        self, claim: models.Claim, outcome: models.Outcome, transition: models.Transition
    ) -> bool:
        with self._write(durable=False):
            rescued = self._record(claim, outcome, transition, expired_before=self._now_us())
        self._wake_after(rescued, transition)
        return rescued

    def wait_for_work(self, timeout: float, interrupt: int | None = None) -> bool:
        if self._listener is not None:
            self._listener.wait(timeout, interrupt)
        else:
            wakeup.sleep(timeout, interrupt)
        return False  # the datagrams carry no reason: always look for a stop request

    # --- jobs: read path ---------------------------------------------------------
    def get_job(self, job_id: str) -> models.Job | None:
        row = self._one("select_job", job_id=job_id)
        return None if row is None else _DECODE.job(row)

    def job_states(self, job_ids: Sequence[str]) -> dict[str, models.JobState]:
        rows = self._all("select_job_states", ids=json.dumps(list(job_ids)))
        return {row["id"]: models.JobState(row["state"]) for row in rows}

    def wait_for_jobs(self, job_ids: Sequence[str], timeout: float) -> None:
        time.sleep(min(max(timeout, 0.0), WAIT_POLL))  # a read of the file costs little

    def list_jobs(self, where: models.JobFilter, limit: int) -> list[models.Job]:
        query, params = common.listing(where)
        params = {k: _json_list(v) if isinstance(v, list) else v for k, v in params.items()}
        return [_DECODE.job(row) for row in self._all(query, limit=limit, **params)]

    def attempts(self, job_id: str) -> list[models.Attempt]:
        return [_DECODE.attempt(row) for row in self._all("select_attempts", job_id=job_id)]

    def counts(self) -> models.Counts:
        return common.counts(self._all("count_jobs"))

    def activity(self, since: datetime) -> models.Activity:
        first = activity.minute_of(since)
        minutes = self._all("select_activity_minutes", since=first)
        durations = self._all("select_activity_durations", since=first)
        return common.activity(minutes, durations, activity.minute_start)

    def live_output(self, job_id: str) -> models.LiveOutput | None:
        row = self._one("select_live_output", job_id=job_id)
        return None if row is None else _DECODE.live_output(row)

    def paused_queues(self) -> dict[str, datetime]:
        return {row["queue"]: _dt(row["paused_at"]) for row in self._all("select_paused_queues")}

    # --- operator actions --------------------------------------------------------
    def _selected(
        self, selection: models.Selection, allowed: Sequence[models.JobState]
    ) -> tuple[str, str]:
        """Inside a transaction: the JSON arrays of the ids `selection` names and their states."""
        states = json.dumps(common.states_for(selection, allowed))
        if selection.ids is not None:
            rows = self._all("select_named_ids", ids=_json_list(selection.ids), states=states)
        else:
            before = None if selection.before is None else _us(selection.before)
            rows = self._all(
                "select_matching_ids", states=states, queue=selection.queue, before=before
            )
        return json.dumps([row["id"] for row in rows]), states

    def retry(self, selection: models.Selection) -> list[str]:
        with self._write():
            ids, states = self._selected(selection, models.RETRYABLE)
            rows = self._all("retry_jobs", ids=ids, states=states, now=self._now_us())
        if rows:
            self._wake_idle_workers()
        return [row["id"] for row in rows]

    def cancel(self, selection: models.Selection) -> dict[str, models.JobState]:
        with self._write():
            ids, _ = self._selected(selection, models.CANCELLABLE)
            rows = self._all("cancel_jobs", ids=ids, now=self._now_us())
        return {row["id"]: models.JobState(row["state"]) for row in rows}

    def signal(self, job_id: str, signum: int) -> bool:
        with self._write():
            sent = self._run("signal_job", job_id=job_id, control=common.signal_control(signum))
        return sent == 1

    def delete(self, selection: models.Selection) -> list[str]:
        with self._write():
            ids, states = self._selected(selection, models.DELETABLE)
            rows = self._all("delete_jobs", ids=ids, states=states)
        return [row["id"] for row in rows]

    def purge_finished(
        self, after: int, window: int, before: Mapping[models.JobState, datetime]
    ) -> models.PurgeStep:
        upto = after + window
        cutoffs = {state: _us(when) for state, when in before.items()}
        with self._write():
            deleted = self._run(
                "purge_finished",
                after=after,
                upto=upto,
                completed_before=cutoffs.get(models.JobState.COMPLETED),
                cancelled_before=cutoffs.get(models.JobState.CANCELLED),
            )
            row = self._one("select_created_after", upto=upto)
        following = None if row is None else _dt(row["created_at"])
        return models.PurgeStep(
            deleted=deleted, next_after=common.next_purge(upto, following, before)
        )

    def prune_activity(self, before: datetime) -> int:
        with self._write():
            return self._run("prune_activity", before=activity.minute_of(before))

    def pause(self, queues: Sequence[str]) -> None:
        with self._write():
            for queue in queues:
                self._run("pause_queue", queue=queue, now=self._now_us())

    def resume(self, queues: Sequence[str] | None) -> list[str]:
        with self._write():
            rows = self._all("resume_queues", queues=_json_list(queues))
        if rows:
            self._wake_idle_workers()
        return [row["queue"] for row in rows]

    # --- workers and config ------------------------------------------------------
    def register_worker(self, info: models.WorkerInfo, ttl: float) -> None:
        self._listener = wakeup.listener()
        now = self._now_us()
        with self._write(durable=False):
            self._upsert_worker(info, now, now + int(ttl * 1_000_000))

    def _upsert_worker(self, info: models.WorkerInfo, now: int, expires_at: int) -> None:
        self._run(
            "upsert_worker",
            id=info.id,
            host=info.host,
            pid=info.pid,
            queues=json.dumps(list(info.queues)),
            started_at=_us(info.started_at),
            now=now,
            expires_at=expires_at,
            wake_addr=wakeup.listener().address,
        )

    def deregister_worker(self, worker_id: str) -> None:
        with self._write(durable=False):
            self._run("delete_worker", worker_id=worker_id)

    def prune_workers(self, exclude: str | None = None) -> int:
        # A read first: every worker prunes every second, and a write takes the one write lock.
        if self._one("select_expired_worker", now=self._now_us(), exclude=exclude) is None:
            return 0
        with self._write(durable=False):
            return self._run("prune_workers", now=self._now_us(), exclude=exclude)

    def release_worker(self, worker_id: str) -> None:
        with self._write(durable=False):
            self._run("expire_worker_leases", worker_id=worker_id, now=self._now_us())
            self._run("delete_worker", worker_id=worker_id)

    def list_workers(self) -> list[models.WorkerInfo]:
        return [_DECODE.worker(row) for row in self._all("list_workers")]

    def request_stop(self, worker_ids: Sequence[str] | None, mode: str) -> list[str]:
        with self._write():
            rows = self._all("request_stop", ids=_json_list(worker_ids), mode=mode)
        self._wake(rows)
        return [row["id"] for row in rows]

    def get_config(self) -> dict[str, str]:
        return {row["key"]: row["value"] for row in self._all("select_config")}

    def set_config(self, key: str, value: str) -> None:
        with self._write():
            self._run("upsert_config", key=key, value=value)
        self._wake_idle_workers()
