"""PostgresStore: the Store contract on a PostgreSQL database shared by workers on many hosts.

One connection per store object, in autocommit mode: a single statement is its own
transaction, and the few multi-statement changes run in explicit transactions. A connection
that broke (a server restart, a dropped link) fails the call in progress with StoreUnavailable
and is opened again by the next call, so a caller that retries rides out an outage. Every time
is the server's: SQL uses now(), and now() here extends the server's clock read at connect with
this host's monotonic clock, so a host whose wall clock is wrong still agrees with the others.
All SQL is in queries.sql beside this file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from queuectl import errors, models
from queuectl.store import location, sqlfile
from queuectl.store import migrate as migrations
from queuectl.store.postgres import connection, notify

_Q = {name: q.sql for name, q in sqlfile.load(__package__ or "queuectl.store.postgres").items()}
Row = dict[str, Any]


def _job(row: Row) -> models.Job:
    return models.Job(
        id=row["id"],
        seq=row["seq"],
        command=row["command"],
        queue=row["queue"],
        priority=row["priority"],
        state=models.JobState(row["state"]),
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        timeout=row["timeout"],
        cwd=row["cwd"],
        env=row["env"] or {},
        run_at=row["run_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        run_count=row["run_count"],
        worker_id=row["worker_id"],
        lease_expires_at=row["lease_expires_at"],
        last_error=row["last_error"],
    )


def _attempt(row: Row) -> models.Attempt:
    return models.Attempt(
        job_id=row["job_id"],
        number=row["number"],
        worker_id=row["worker_id"],
        host=row["host"],
        pid=row["pid"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        exit_code=row["exit_code"],
        signal=row["signal"],
        end=models.AttemptEnd(row["outcome"]),
        error=row["error"],
        stdout=bytes(row["stdout"]),
        stderr=bytes(row["stderr"]),
    )


def _worker(row: Row) -> models.WorkerInfo:
    return models.WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        queues=tuple(row["queues"]),
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        job_id=row["job_id"],
        stop=row["stop"],
        expires_at=row["expires_at"],
    )


def _text(value: str | None) -> str | None:
    """Text PostgreSQL can hold: a NUL (from an OS error message, say) becomes U+FFFD.

    What users give is refused at validation instead (spec.py); this covers what the worker
    writes itself, which must never make a finish fail for good.
    """
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


def _has_nul(job: models.NewJob) -> bool:
    """Whether a job holds a NUL, which neither text nor jsonb can (the spec refuses it too)."""
    texts = (job.id, job.command, job.queue, job.cwd or "", *job.env, *job.env.values())
    return any("\x00" in text for text in texts)


def _composed(name: str, **identifiers: str) -> sql.Composed:
    """A query whose {placeholders} are identifiers (schema, channel), safely quoted."""
    return sql.SQL(_Q[name]).format(
        **{key: sql.Identifier(value) for key, value in identifiers.items()}
    )


class PostgresStore:
    """The Store contract on a PostgreSQL database."""

    def __init__(self, url: str, create: bool = True) -> None:
        self.where = location.parse_postgres(url)
        self.create = create
        self._conn: connection.Connection | None = connection.connect(self.where)
        self._clock: tuple[datetime, float] | None = None
        self._listener: notify.Listener | None = None
        self._channel = notify.channel(self.where.schema)

    # --- helpers -------------------------------------------------------------
    def _db(self) -> connection.Connection:
        """This store's connection, opened again when the last one broke."""
        conn = self._conn
        if conn is None or connection.broken(conn):
            if conn is not None:
                conn.close()
            self._conn = None
            self._conn = conn = connection.connect(self.where)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[connection.Connection]:
        with connection.unavailable_on_error(self.where):
            conn = self._db()
            with conn.transaction():
                yield conn

    def _one(self, name: str, /, **params: Any) -> Row | None:
        with connection.unavailable_on_error(self.where):
            row: Row | None = self._db().execute(_Q[name], params).fetchone()
        return row

    def _all(self, name: str, /, **params: Any) -> list[Row]:
        with connection.unavailable_on_error(self.where):
            return self._db().execute(_Q[name], params).fetchall()

    def _run(self, name: str, /, **params: Any) -> int:
        with connection.unavailable_on_error(self.where):
            return self._db().execute(_Q[name], params).rowcount

    def _set_clock(self, server_now: datetime) -> None:
        self._clock = (server_now, time.monotonic())

    # --- lifecycle -------------------------------------------------------------
    def migrate(self) -> None:
        known = migrations.discover("queuectl.store.postgres")
        try:
            rows = self._all("select_schema_versions")
        except psycopg.errors.UndefinedTable:
            rows = []
        if rows:
            self._set_clock(rows[0]["clock"])
        if rows and not migrations.pending(known, {row["version"] for row in rows}):
            return
        if not self.create:
            raise errors.StoreUnavailable(
                f"db: {self.where.shown}: schema {self.where.schema} has no queuectl tables "
                "(was it dropped?)"
            )
        with self._transaction() as conn:
            conn.execute(_Q["lock_migrations"], {"schema": self.where.schema})
            conn.execute(_composed("create_schema", schema=self.where.schema))
            conn.execute(_Q["create_schema_version"])
            applied = {row["version"] for row in conn.execute(_Q["select_schema_versions"])}
            for migration in migrations.pending(known, applied):
                conn.execute(migration.sql.encode())  # a script: the simple query protocol
                conn.execute(
                    _Q["insert_schema_version"],
                    {"version": migration.version, "name": migration.name},
                )

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def still_current(self) -> bool:
        return True  # a server is reached by its address; a restarted one is still the one

    def now(self) -> datetime:
        if self._clock is None:
            row = self._one("select_clock")
            if row is None:
                raise errors.StoreUnavailable(f"db: {self.where.shown}: the server has no clock")
            self._set_clock(row["clock"])
            return row["clock"]  # type: ignore[no-any-return]
        server_now, read_at = self._clock
        return server_now + timedelta(seconds=time.monotonic() - read_at)

    def defer_upkeep(self) -> None:
        pass  # autovacuum is the server's

    def upkeep(self) -> None:
        pass

    # --- jobs: write path --------------------------------------------------------
    def enqueue(self, jobs: Sequence[models.NewJob]) -> None:
        if any(_has_nul(job) for job in jobs):
            raise errors.UsageError("job: text fields must not contain NUL characters")
        try:
            with self._transaction() as conn:
                self._copy(conn, jobs)
                # the wake-up rides on the same transaction: sent when it commits
                self._wake_idle_workers(conn)
        except psycopg.errors.UniqueViolation:
            raise self._duplicate(jobs) from None
        except psycopg.DataError as exc:
            raise errors.UsageError(f"job: {connection.reason(exc)}") from None

    @staticmethod
    def _copy(conn: connection.Connection, jobs: Sequence[models.NewJob]) -> None:
        with conn.cursor().copy(_Q["insert_jobs"]) as copy:
            for job in jobs:
                copy.write_row(
                    (
                        job.id,
                        job.command,
                        job.queue,
                        job.priority,
                        "pending",
                        job.max_retries,
                        job.timeout,
                        job.cwd,
                        Jsonb(job.env) if job.env else None,
                        job.run_at,
                    )
                )

    def _duplicate(self, jobs: Sequence[models.NewJob]) -> errors.DuplicateJob:
        """Name the first job whose id clashes (with the store, or within the batch)."""
        taken = {row["id"] for row in self._all("select_existing_ids", ids=[j.id for j in jobs])}
        seen: set[str] = set()
        for line, job in enumerate(jobs, start=1):
            if job.id in seen or job.id in taken:
                return errors.DuplicateJob(job.id, line if len(jobs) > 1 else None, line - 1)
            seen.add(job.id)
        return errors.DuplicateJob("?")

    def _wake_idle_workers(self, conn: connection.Connection) -> None:
        conn.execute(_Q["wake_workers"], {"channel": self._channel})

    def claim(
        self, worker_id: str, host: str, queues: Sequence[str] | None, lease: float
    ) -> models.Claim | None:
        with connection.unavailable_on_error(self.where):
            return self._claim(self._db(), worker_id, host, queues, lease)

    def _claim(
        self,
        conn: connection.Connection,
        worker_id: str,
        host: str,
        queues: Sequence[str] | None,
        lease: float,
    ) -> models.Claim | None:
        params = {
            "worker_id": worker_id,
            "host": host,
            "queues": None if queues is None else list(queues),
            "lease": lease,
        }
        row = conn.execute(_Q["claim_job"], params).fetchone()
        if row is None:
            return None
        return models.Claim(
            job=_job(row),
            worker_id=worker_id,
            host=host,
            claimed_at=row["claimed_at"],
            lease=lease,
        )

    def next_run_at(self, queues: Sequence[str] | None) -> datetime | None:
        row = self._one("select_next_run_at", queues=None if queues is None else list(queues))
        return None if row is None else row["run_at"]

    def heartbeat(
        self, worker: models.WorkerInfo, claim: models.Claim | None, ttl: float
    ) -> models.HeartbeatReply:
        with self._transaction() as conn:
            row = conn.execute(_Q["touch_worker"], {"worker_id": worker.id, "ttl": ttl}).fetchone()
            if row is None:
                self._upsert_worker(conn, worker, ttl)
            held = (
                claim is not None
                and conn.execute(
                    _Q["extend_lease"], {"lease": claim.lease, **self._claim_key(claim)}
                ).rowcount
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

    @staticmethod
    def _claim_key(claim: models.Claim) -> dict[str, Any]:
        return {
            "seq": claim.job.seq,
            "worker_id": claim.worker_id,
            "run_count": claim.job.run_count,
        }

    def finish(
        self, claim: models.Claim, outcome: models.Outcome, transition: models.Transition
    ) -> bool:
        with self._transaction() as conn:
            return self._record(conn, claim, outcome, transition, rescue=False)

    def finish_and_claim(
        self,
        claim: models.Claim,
        outcome: models.Outcome,
        transition: models.Transition,
        queues: Sequence[str] | None,
        lease: float,
    ) -> tuple[bool, models.Claim | None]:
        with self._transaction() as conn:
            finished = self._record(conn, claim, outcome, transition, rescue=False)
            following = self._claim(conn, claim.worker_id, claim.host, queues, lease)
        return finished, following

    def _record(
        self,
        conn: connection.Connection,
        claim: models.Claim,
        outcome: models.Outcome,
        transition: models.Transition,
        rescue: bool,
    ) -> bool:
        """Record the attempt and apply the transition, inside the caller's transaction.

        A job that goes back to waiting may be due now: idle workers are woken with the commit.
        """
        key = self._claim_key(claim)
        inserted = conn.execute(
            _Q["insert_attempt"],
            {
                "pid": outcome.pid,
                "started_at": outcome.started_at,
                "ended_at": outcome.ended_at,
                "exit_code": outcome.exit_code,
                "signal": outcome.signal,
                "outcome": outcome.end.value,
                "error": _text(outcome.error),
                "stdout": outcome.stdout,
                "stderr": outcome.stderr,
                "rescue": rescue,
                **key,
            },
        ).rowcount
        if inserted != 1:
            return False
        conn.execute(
            _Q["finish_job"],
            {
                "state": transition.state.value,
                "attempts": transition.attempts,
                "run_at": transition.run_at,
                "last_error": _text(transition.last_error),
                **key,
            },
        )
        if transition.state in (models.JobState.PENDING, models.JobState.FAILED):
            self._wake_idle_workers(conn)
        return True

    def expired_claims(self, limit: int) -> list[models.Claim]:
        return [
            models.Claim(
                job=_job(row),
                worker_id=row["worker_id"],
                host=row["worker_host"],
                claimed_at=row["claimed_at"],
            )
            for row in self._all("select_expired_claims", limit=limit)
        ]

    def rescue(
        self, claim: models.Claim, outcome: models.Outcome, transition: models.Transition
    ) -> bool:
        with self._transaction() as conn:
            return self._record(conn, claim, outcome, transition, rescue=True)

    def wait_for_work(self, timeout: float, interrupt: int | None = None) -> None:
        if self._listener is None:
            self._listener = notify.Listener(self.where, _Q["listen"])
        self._listener.wait(timeout, interrupt)

    # --- jobs: read path ---------------------------------------------------------
    def get_job(self, job_id: str) -> models.Job | None:
        row = self._one("select_job", job_id=job_id)
        return None if row is None else _job(row)

    def list_jobs(self, where: models.JobFilter, limit: int) -> list[models.Job]:
        state = None if where.state is None else where.state.value
        if where.state in (models.JobState.FAILED, models.JobState.DEAD):
            rows = self._all("list_problem_jobs", state=state, queue=where.queue, limit=limit)
        elif where.state is models.JobState.PROCESSING:
            rows = self._all("list_processing_jobs", queue=where.queue, limit=limit)
        else:
            rows = self._all("list_jobs", state=state, queue=where.queue, limit=limit)
        return [_job(row) for row in rows]

    def attempts(self, job_id: str) -> list[models.Attempt]:
        return [_attempt(row) for row in self._all("select_attempts", job_id=job_id)]

    def counts(self) -> models.Counts:
        by_queue: dict[str, dict[models.JobState, int]] = {}
        for row in self._all("count_jobs"):
            by_queue.setdefault(row["queue"], {})[models.JobState(row["state"])] = row["n"]
        return models.Counts(by_queue=by_queue)

    # --- operator actions --------------------------------------------------------
    def retry_dead(self, job_ids: Sequence[str] | None) -> list[str]:
        with self._transaction() as conn:
            ids = None if job_ids is None else list(job_ids)
            rows = conn.execute(_Q["retry_dead"], {"ids": ids}).fetchall()
            if rows:
                self._wake_idle_workers(conn)
        return [row["id"] for row in rows]

    # --- workers and config ------------------------------------------------------
    def register_worker(self, info: models.WorkerInfo, ttl: float) -> None:
        if self._listener is None:  # listening before the row exists: no wake-up is missed
            self._listener = notify.Listener(self.where, _Q["listen"])
            self._listener.wait(0)
        with self._transaction() as conn:
            self._upsert_worker(conn, info, ttl)

    def _upsert_worker(
        self, conn: connection.Connection, info: models.WorkerInfo, ttl: float
    ) -> None:
        conn.execute(
            _Q["upsert_worker"],
            {
                "id": info.id,
                "host": info.host,
                "pid": info.pid,
                "queues": list(info.queues),
                "ttl": ttl,
            },
        )

    def deregister_worker(self, worker_id: str) -> None:
        self._run("delete_worker", worker_id=worker_id)

    def prune_workers(self, exclude: str | None = None) -> int:
        if self._one("select_expired_worker", exclude=exclude) is None:
            return 0
        return self._run("prune_workers", exclude=exclude)

    def release_worker(self, worker_id: str) -> None:
        with self._transaction() as conn:
            conn.execute(_Q["expire_worker_leases"], {"worker_id": worker_id})
            conn.execute(_Q["delete_worker"], {"worker_id": worker_id})

    def list_workers(self) -> list[models.WorkerInfo]:
        return [_worker(row) for row in self._all("list_workers")]

    def request_stop(self, worker_ids: Sequence[str] | None, mode: str) -> list[str]:
        with self._transaction() as conn:
            ids = None if worker_ids is None else list(worker_ids)
            rows = conn.execute(_Q["request_stop"], {"ids": ids, "mode": mode}).fetchall()
            self._wake_idle_workers(conn)
        return [row["id"] for row in rows]

    def get_config(self) -> dict[str, str]:
        return {row["key"]: row["value"] for row in self._all("select_config")}

    def set_config(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute(_Q["upsert_config"], {"key": key, "value": value})
            self._wake_idle_workers(conn)
