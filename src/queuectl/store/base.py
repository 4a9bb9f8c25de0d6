"""The storage contract. Every backend implements it; nothing else touches a database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from queuectl import models


class Store(Protocol):
    """Durable jobs, attempts, workers and config, with atomic state changes."""

    # --- lifecycle ---------------------------------------------------------
    def migrate(self) -> None:
        """Create or upgrade the schema. Idempotent; safe from many processes at once."""

    def close(self) -> None:
        """Release the connection (and a worker's wake-up socket)."""

    def now(self) -> datetime:
        """The store's clock, which every stored time uses."""

    def still_current(self) -> bool:
        """Whether this connection still reaches the store its location names.

        SQLite: False once the file was deleted or replaced (this connection would go on with
        the old file while everyone else uses a new one). Safe to call from any thread: it never
        uses the connection.
        """

    def defer_upkeep(self) -> None:
        """Keep this connection's writes fast: leave storage upkeep to `upkeep()` calls.

        For a worker's claim-run-finish loop; its heartbeat thread calls `upkeep()`.
        """

    def upkeep(self) -> None:
        """Do the storage upkeep deferred by `defer_upkeep()` connections; cheap when none is due.

        SQLite: checkpoint the write-ahead log into the database file.
        """

    def compact_counts(self) -> None:
        """Fold the logs of job count changes and of activity into one row per key.

        Keeps what counts() and activity() read short; both say the same before and after. Safe
        from many connections at once, and never waits for another's. PostgreSQL keeps both as
        such logs (no row that every claim or finish would lock); SQLite's change in place: no-op.
        """

    # --- jobs: write path ----------------------------------------------------
    def enqueue(self, jobs: Sequence[models.NewJob]) -> None:
        """Insert all jobs durably in one transaction, or none, then wake idle workers.

        Raises:
            DuplicateJob: an id exists already (or twice in `jobs`); nothing is written.
        """

    def claim(
        self, worker_id: str, host: str, queues: Sequence[str] | None, lease: float
    ) -> models.Claim | None:
        """Atomically move the best runnable job to 'processing', leased to worker_id for `lease` s.

        Best = highest priority, then earliest run_at, then enqueue order; only jobs with
        run_at <= now, in `queues` when given. Raises the job's `attempts` and `run_count` by one.
        Returns None when nothing is runnable. Never returns one job to two callers.
        """

    def next_run_at(self, queues: Sequence[str] | None) -> datetime | None:
        """When the earliest job scheduled for later becomes due; None when none waits.

        Scheduled for later: delayed at enqueue (run_at after created_at) or waiting for a retry.
        Jobs due on enqueue are left out: they are claimable at once, and their enqueue wakes
        idle workers, so an idle worker never needs to wait for one.
        """

    def heartbeat(
        self, worker: models.WorkerInfo, claim: models.Claim | None, ttl: float
    ) -> models.HeartbeatReply:
        """Mark the worker alive for `ttl` s more and extend its claim's lease by `claim.lease` s.

        In one transaction. A worker whose row is gone (pruned while frozen) is registered
        again. Returns its stop request and whether the claim still owns its job: checked
        whether or not the row was there.
        """

    def stop_requested(self, worker_id: str) -> str | None:
        """The worker's pending stop request ('graceful' or 'now'), read without writing."""

    def requests(self, claim: models.Claim) -> models.Requests:
        """A busy worker's stop request and its job's control request, read without writing.

        The control is None once the claim no longer owns the job.
        """

    def clear_control(self, claim: models.Claim, control: str) -> None:
        """Mark a control request acted on (a signal sent), unless another replaced it."""

    def save_output(self, claim: models.Claim, output: models.LiveOutput) -> bool:
        """Save the running attempt's output so far; False when the claim lost its job."""

    def finish(
        self, claim: models.Claim, outcome: models.Outcome, transition: models.Transition
    ) -> bool:
        """Record the attempt and apply the transition in one transaction.

        The attempt is counted in its queue's activity of this minute (queuectl.activity.tally;
        the store's clock says which minute). A cancel requested meanwhile turns a transition to
        pending or failed into cancelled. The attempt's live output is dropped. Only while the
        claim still owns the job: returns False, changing nothing, when the lease was lost (the
        job was rescued).
        """

    def finish_and_claim(
        self,
        claim: models.Claim,
        outcome: models.Outcome,
        transition: models.Transition,
        queues: Sequence[str] | None,
        lease: float,
    ) -> tuple[bool, models.Claim | None]:
        """finish(), then claim() for the same worker and host, in one transaction.

        A busy worker commits once a job instead of twice. Returns what finish() and claim()
        would; the claim is made even when the finish changed nothing (its lease was lost).
        """

    def expired_claims(self, limit: int) -> list[models.Claim]:
        """Claims whose lease has expired: their worker is presumed dead."""

    def rescue(
        self, claim: models.Claim, outcome: models.Outcome, transition: models.Transition
    ) -> bool:
        """Like finish(), but only while the lease is still expired.

        So a late heartbeat or a finish that just committed wins. Returns False when nothing
        was changed.
        """

    def wait_for_work(self, timeout: float, interrupt: int | None = None) -> bool:
        """Block until new work may have come, `timeout` seconds pass, or `interrupt` is readable.

        New work: a wake-up from enqueue, a retry, a stop request. `interrupt` is a file
        descriptor of the caller's (its signal pipe), which the caller drains. True only when
        what woke it is known to be new work and nothing else (no stop request among it, none
        maybe lost), so the caller may claim at once without looking for a stop request first;
        False whenever unsure. Raises StoreUnavailable when wake-ups cannot be received (the
        caller backs off and polls); the next call tries to receive them again.
        """

    # --- jobs: read path ---------------------------------------------------
    def get_job(self, job_id: str) -> models.Job | None:
        """One job, or None."""

    def job_states(self, job_ids: Sequence[str]) -> dict[str, models.JobState]:
        """The state of each of these jobs that exists, in one read (what `wait` reads)."""

    def wait_for_jobs(self, job_ids: Sequence[str], timeout: float) -> None:
        """Block until one of these jobs may have ended (finished or deleted), or `timeout` s.

        The caller reads their states after each return; a return says nothing for sure.
        SQLite: sleeps a short poll interval. PostgreSQL: a call naming jobs not marked yet
        listens for their ends, marks them waited and returns at once (so that the caller's
        next read misses nothing); other calls wait for a notification, and return after a
        fallback interval without one (a notification lost with a connection).
        """

    def list_jobs(self, where: models.JobFilter, limit: int) -> list[models.Job]:
        """Jobs matching `where`, newest first, at most `limit`."""

    def attempts(self, job_id: str) -> list[models.Attempt]:
        """A job's attempts, oldest first (empty for an unknown job)."""

    def counts(self) -> models.Counts:
        """How many jobs each queue has in each state.

        From counts kept with every change (in its transaction), never a count of the jobs: as
        cheap at ten million jobs as at ten. PostgreSQL: folds the log first (compact_counts)
        when it has grown long, as it does only while no worker runs to fold it.
        """

    def activity(self, since: datetime) -> models.Activity:
        """The attempts counted in the minutes from `since`, per minute and per duration bucket.

        Counted by finish() and rescue(), per queue (queuectl.activity.tally). Read from rows
        kept per queue, minute and bucket: as cheap at ten million jobs as at ten. Several items
        with the same key may come; they add up.
        """

    def live_output(self, job_id: str) -> models.LiveOutput | None:
        """The running attempt's output saved so far; None when the job is not running."""

    def paused_queues(self) -> dict[str, datetime]:
        """The paused queues and when each was paused."""

    # --- operator actions ----------------------------------------------------
    # Each acts, in one transaction, on the jobs a Selection names that are in a state the
    # action applies to (models.RETRYABLE, CANCELLABLE, DELETABLE); others are left alone.
    def retry(self, selection: models.Selection) -> list[str]:
        """Move finished jobs to pending, attempts reset, due now, and wake idle workers.

        Earlier attempts stay in the history. Returns the ids moved.
        """

    def cancel(self, selection: models.Selection) -> dict[str, models.JobState]:
        """Cancel waiting jobs; ask running ones' workers to stop and cancel them.

        Returns each job's state after the call: cancelled, or processing (cancel requested).
        """

    def signal(self, job_id: str, signum: int) -> bool:
        """Ask a running job's worker to send `signum` to its processes; False if not running."""

    def delete(self, selection: models.Selection) -> list[str]:
        """Remove jobs that are not running, with their attempts. Returns the ids removed."""

    def purge_finished(
        self, after: int, window: int, before: Mapping[models.JobState, datetime]
    ) -> models.PurgeStep:
        """Retention: delete old completed and cancelled jobs of one seq window, with attempts.

        The window is seq in (after, after + window]; a job goes when it finished before its
        state's cutoff in `before` (a state left out is kept).
        """

    def prune_activity(self, before: datetime) -> int:
        """Retention: forget the activity of minutes begun before `before`; say how many rows."""

    def pause(self, queues: Sequence[str]) -> None:
        """Stop claims from taking these queues' jobs (running ones finish)."""

    def resume(self, queues: Sequence[str] | None) -> list[str]:
        """Resume these queues (every paused one when None); wake workers. Returns those resumed."""

    # --- workers and config ------------------------------------------------
    def register_worker(self, info: models.WorkerInfo, ttl: float) -> None:
        """Record a live worker, presumed dead after `ttl` s without a heartbeat.

        Also starts listening for wake-ups, which wait_for_work() waits for.
        """

    def deregister_worker(self, worker_id: str) -> None:
        """Forget a worker that is exiting."""

    def prune_workers(self, exclude: str | None = None) -> int:
        """Forget workers past their own deadline (`expires_at`), except `exclude`; say how many."""

    def release_worker(self, worker_id: str) -> None:
        """A worker is known dead: forget it and make its claims rescuable at once."""

    def list_workers(self) -> list[models.WorkerInfo]:
        """Registered workers, oldest first."""

    def request_stop(self, worker_ids: Sequence[str] | None, mode: str) -> list[str]:
        """Ask workers (these, or all when None) to stop, 'graceful' or 'now', and wake them.

        Returns the ids asked.
        """

    def get_config(self) -> dict[str, str]:
        """Every stored config value, as text."""

    def set_config(self, key: str, value: str) -> None:
        """Store one config value (already checked by the caller)."""
