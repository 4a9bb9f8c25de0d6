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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from queuectl import activity, errors, models
from queuectl.store import common, location, sqlfile
from queuectl.store import migrate as migrations
from queuectl.store.postgres import connection, notify

WAIT_FALLBACK = 1.0
"""Seconds `wait` goes without a notification before it reads its jobs' states anyway."""
_Q = {name: q.sql for name, q in sqlfile.load(__package__ or "queuectl.store.postgres").items()}
Row = dict[str, Any]
COMPACT_AT = 10_000
"""Rows of the count log past which counts() folds it itself (workers fold it every second)."""


_DECODE = common.Decode(time=lambda value: value, json=lambda value: value)
"""psycopg decodes timestamptz, jsonb and arrays itself."""


def _text(value: str | None) -> str | None:
    """Text PostgreSQL can hold: a NUL (from an OS error message, say) becomes U+FFFD.

    What users give is refused at validation instead (spec.py); this covers what the worker
    writes itself, which must never make a finish fail for good.
    """
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


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
        self._done: notify.Listener | None = None
        """`wait`'s listener for the ends of the jobs it marked waited (in self._waited)."""
        self._waited: set[str] = set()

    # --- helpers -------------------------------------------------------------
    def _db(self) -> connection.Connection:
        """This store's connection, opened again when the last one broke."""
        conn = self._conn
        if conn is None or connection.broken(conn) or connection.hung_up(conn):
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
        for listener in (self._listener, self._done):
            if listener is not None:
                listener.close()
        self._listener = self._done = None
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

    def compact_counts(self) -> None:
        self._run("compact_counts")
        self._run("compact_activity")

    # --- jobs: write path --------------------------------------------------------
    def enqueue(self, jobs: Sequence[models.NewJob]) -> None:
        # A NUL is refused by psycopg (text, text[]) or by the server (jsonb's \u0000), and the
        # whole batch rolls back: it is looked for only then, off the path of a batch with none
        # (the look at every field cost 0.16 s a 100,000-job batch, a tenth of the enqueue).
        try:
            with self._transaction() as conn:
                self._copy(conn, jobs)
                # the wake-up rides on the same transaction: sent when it commits
                self._wake_idle_workers(conn)
        except psycopg.errors.UniqueViolation:
            self._refuse_nul(jobs)
            found = self._all("select_existing_ids", ids=[job.id for job in jobs])
            taken = {row["id"] for row in found}
            raise common.first_duplicate(jobs, taken.__contains__) from None
        except psycopg.DataError as exc:
            self._refuse_nul(jobs)
            raise errors.UsageError(f"job: {connection.reason(exc)}") from None

    @staticmethod
    def _refuse_nul(jobs: Sequence[models.NewJob]) -> None:
        """Raise the NUL refusal (before any other) when a job of a failed batch holds one."""
        if any(common.has_nul(job) for job in jobs):
            raise errors.UsageError(common.NUL_REFUSED) from None

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
                        list(job.tags) if job.tags else None,
                    )
                )

    def _wake_idle_workers(self, conn: connection.Connection, why: str = notify.WORK) -> None:
        conn.execute(_Q["wake_workers"], {"channel": self._channel, "payload": why})

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
            job=_DECODE.job(row),
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
                    _Q["extend_lease"], {"lease": claim.lease, **common.claim_key(claim)}
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

    def requests(self, claim: models.Claim) -> models.Requests:
        row = self._one("select_requests", **common.claim_key(claim))
        return models.Requests() if row is None else common.requests(row)

    def clear_control(self, claim: models.Claim, control: str) -> None:
        self._run("clear_control", control=control, **common.claim_key(claim))

    def save_output(self, claim: models.Claim, output: models.LiveOutput) -> bool:
        saved = self._run(
            "upsert_live_output",
            pid=output.pid,
            stdout=output.stdout,
            stderr=output.stderr,
            stdout_total=output.stdout_total,
            stderr_total=output.stderr_total,
            **common.claim_key(claim),
        )
        return saved == 1

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
        key = common.claim_key(claim)
        tally = activity.tally(outcome)
        inserted = conn.execute(
            _Q["insert_attempt"],
            {
                "counted": tally is not None,
                "bucket": 0 if tally is None else tally.bucket,
                "completed": 0 if tally is None else tally.completed,
                "failed": 0 if tally is None else tally.failed,
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
        conn.execute(_Q["delete_live_output"], {"seq": claim.job.seq})
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
            _DECODE.expired_claim(row) for row in self._all("select_expired_claims", limit=limit)
        ]

    def rescue(
        self, claim: models.Claim, outcome: models.Outcome, transition: models.Transition
    ) -> bool:
        with self._transaction() as conn:
            return self._record(conn, claim, outcome, transition, rescue=True)

    def wait_for_work(self, timeout: float, interrupt: int | None = None) -> bool:
        return self._listening().wait(timeout, interrupt) is notify.Wake.WORK

    def _listening(self) -> notify.Listener:
        """This store's listener, made on first use (it connects at its first wait)."""
        if self._listener is None:
            self._listener = notify.Listener(self.where, _Q["listen"])
        return self._listener

    # --- jobs: read path ---------------------------------------------------------
    def get_job(self, job_id: str) -> models.Job | None:
        row = self._one("select_job", job_id=job_id)
        return None if row is None else _DECODE.job(row)

    def job_states(self, job_ids: Sequence[str]) -> dict[str, models.JobState]:
        rows = self._all("select_job_states", ids=list(job_ids))
        return {row["id"]: models.JobState(row["state"]) for row in rows}

    def wait_for_jobs(self, job_ids: Sequence[str], timeout: float) -> None:
        if self._done is None:
            done = notify.done_channel(self.where.schema)
            self._done = notify.Listener(self.where, _Q["listen"], done)
        new = [job_id for job_id in job_ids if job_id not in self._waited]
        if new:
            # Listening first (a zero wait connects if need be, and never blocks), marking next,
            # then back at once: an end committed after the mark notifies, and one committed
            # before it is seen by the caller's next read.
            self._done.wait(0.0)
            for job_id in new:
                # One row a statement: it never holds one job's lock while waiting for another's.
                self._run("mark_waited", job_id=job_id)
                self._waited.add(job_id)
            return
        self._done.wait(min(max(timeout, 0.0), WAIT_FALLBACK))  # a (re)connect returns at once

    def list_jobs(self, where: models.JobFilter, limit: int) -> list[models.Job]:
        query, params = common.listing(where)
        return [_DECODE.job(row) for row in self._all(query, limit=limit, **params)]

    def attempts(self, job_id: str) -> list[models.Attempt]:
        return [_DECODE.attempt(row) for row in self._all("select_attempts", job_id=job_id)]

    def counts(self) -> models.Counts:
        rows = self._all("count_jobs")
        if sum(row["deltas"] for row in rows) > COMPACT_AT:
            # Nobody folded the log (no worker runs, and every change appended): fold it now.
            self.compact_counts()
            rows = self._all("count_jobs")
        return common.counts([row for row in rows if row["n"] != 0])

    def activity(self, since: datetime) -> models.Activity:
        minutes = self._all("select_activity_minutes", since=since)
        durations = self._all("select_activity_durations", since=since)
        return common.activity(minutes, durations, lambda t: t)

    def live_output(self, job_id: str) -> models.LiveOutput | None:
        row = self._one("select_live_output", job_id=job_id)
        return None if row is None else _DECODE.live_output(row)

    def paused_queues(self) -> dict[str, datetime]:
        return {row["queue"]: row["paused_at"] for row in self._all("select_paused_queues")}

    # --- operator actions --------------------------------------------------------
    @staticmethod
    def _selected(
        conn: connection.Connection,
        selection: models.Selection,
        allowed: Sequence[models.JobState],
    ) -> dict[str, Any]:
        """Inside a transaction: the ids `selection` names and their states, as parameters."""
        states = common.states_for(selection, allowed)
        params: dict[str, Any]
        if selection.ids is not None:
            params = {"ids": list(selection.ids), "states": states}
            rows = conn.execute(_Q["select_named_ids"], params).fetchall()
        else:
            params = {
                "states": states,
                "queue": selection.queue,
                "before": selection.before,
            }
            rows = conn.execute(_Q["select_matching_ids"], params).fetchall()
        return {"ids": [row["id"] for row in rows], "states": states}

    def retry(self, selection: models.Selection) -> list[str]:
        with self._transaction() as conn:
            params = self._selected(conn, selection, models.RETRYABLE)
            rows = conn.execute(_Q["retry_jobs"], params).fetchall()
            if rows:
                self._wake_idle_workers(conn)
        return [row["id"] for row in rows]

    def cancel(self, selection: models.Selection) -> dict[str, models.JobState]:
        with self._transaction() as conn:
            params = self._selected(conn, selection, models.CANCELLABLE)
            rows = conn.execute(_Q["cancel_jobs"], params).fetchall()
        return {row["id"]: models.JobState(row["state"]) for row in rows}

    def signal(self, job_id: str, signum: int) -> bool:
        control = common.signal_control(signum)
        return self._run("signal_job", job_id=job_id, control=control) == 1

    def delete(self, selection: models.Selection) -> list[str]:
        with self._transaction() as conn:
            params = self._selected(conn, selection, models.DELETABLE)
            rows = conn.execute(_Q["delete_jobs"], params).fetchall()
        return [row["id"] for row in rows]

    def purge_finished(
        self, after: int, window: int, before: Mapping[models.JobState, datetime]
    ) -> models.PurgeStep:
        upto = after + window
        params = {
            "after": after,
            "upto": upto,
            "completed_before": before.get(models.JobState.COMPLETED),
            "cancelled_before": before.get(models.JobState.CANCELLED),
        }
        with self._transaction() as conn:
            deleted = conn.execute(_Q["purge_finished"], params).rowcount
            row = conn.execute(_Q["select_created_after"], {"upto": upto}).fetchone()
        following = None if row is None else row["created_at"]
        return models.PurgeStep(
            deleted=deleted, next_after=common.next_purge(upto, following, before)
        )

    def prune_activity(self, before: datetime) -> int:
        return self._run("prune_activity", before=before)

    def pause(self, queues: Sequence[str]) -> None:
        with self._transaction() as conn:
            for queue in queues:
                conn.execute(_Q["pause_queue"], {"queue": queue})

    def resume(self, queues: Sequence[str] | None) -> list[str]:
        with self._transaction() as conn:
            names = None if queues is None else list(queues)
            rows = conn.execute(_Q["resume_queues"], {"queues": names}).fetchall()
            if rows:
                self._wake_idle_workers(conn)
        return [row["queue"] for row in rows]

    # --- workers and config ------------------------------------------------------
    def register_worker(self, info: models.WorkerInfo, ttl: float) -> None:
        self._listening().wait(0)  # listening before the row exists: no wake-up is missed
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
        return [_DECODE.worker(row) for row in self._all("list_workers")]

    def request_stop(self, worker_ids: Sequence[str] | None, mode: str) -> list[str]:
        with self._transaction() as conn:
            ids = None if worker_ids is None else list(worker_ids)
            rows = conn.execute(_Q["request_stop"], {"ids": ids, "mode": mode}).fetchall()
            self._wake_idle_workers(conn, notify.STOP)
        return [row["id"] for row in rows]

    def get_config(self) -> dict[str, str]:
        return {row["key"]: row["value"] for row in self._all("select_config")}

    def set_config(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute(_Q["upsert_config"], {"key": key, "value": value})
            self._wake_idle_workers(conn)
