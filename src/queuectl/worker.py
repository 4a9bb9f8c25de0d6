"""One worker process: claim a job, run it, record the attempt, repeat until stopped.

This module is the main thread's loop and the stop state the threads share. Around it:
- heartbeat.Heartbeat keeps the worker's row and its claim's lease alive, and stops the job when
  the lease is lost;
- maintenance.Maintenance reloads the config, rescues dead workers' jobs, prunes dead workers,
  does the storage upkeep, and notices a store that was deleted or replaced;
- signals.StopSignals counts SIGTERM/SIGINT (first: graceful, second: now) and wakes the loop.
Stop requests made through the store (`queuectl worker stop`, from any shell or host) reach it
through the heartbeat while a job runs and through a wake-up while idle.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from queuectl import (
    config,
    errors,
    executor,
    heartbeat,
    maintenance,
    models,
    outage,
    proctree,
    retry,
    signals,
    store,
)
from queuectl.record import replace

log = logging.getLogger(__name__)

EVENT_SLACK = 0.001
"""Seconds an idle worker oversleeps a due time, so that the event has surely passed."""
WAKE_UPS = "wake-ups"
"""The part of the store outage that is waiting for wake-ups."""
EXIT_STORE_GONE = 3
"""A worker's exit code when its store was deleted or replaced: its supervisor starts no other."""


HOSTNAME_VAR = "QUEUECTL_HOSTNAME"
"""Environment variable overriding the host name a worker records (containers, tests)."""


def host_name() -> str:
    """The name of this host as workers record it: $QUEUECTL_HOSTNAME, else the system's.

    A rescue kills a dead worker's leftover processes only on the host its claim names, so
    every worker of one machine must name it alike.
    """
    return os.environ.get(HOSTNAME_VAR) or socket.gethostname()


def new_worker_id() -> str:
    """A short random worker id."""
    return f"w-{secrets.token_hex(4)}"


class Worker:
    """One worker process's loop; `run()` returns its exit code when it has stopped."""

    def __init__(
        self,
        db: str,
        queues: Sequence[str] = (),
        worker_id: str | None = None,
        burst: bool = False,
    ) -> None:
        self.db = db
        self.queues = tuple(queues) or None
        self.burst = burst
        """Exit (status 0) once no job this worker serves is due, instead of waiting for more."""
        self.info = models.WorkerInfo(
            id=worker_id or new_worker_id(),
            host=host_name(),
            pid=os.getpid(),
            queues=tuple(queues),
            started_at=datetime.now(UTC),
            heartbeat_at=datetime.now(UTC),
        )
        self.stop = threading.Event()
        self.job_abort = threading.Event()
        self.exiting = threading.Event()
        self.cfg = config.Config()
        self.signals = signals.StopSignals()
        self.exit_code = 0
        self._current: heartbeat.Lease | None = None
        self._lock = threading.Lock()
        self._now_requested = False
        self._cancelled: models.Claim | None = None
        """The running claim whose job `queuectl cancel` asked to stop."""
        self._signals_to_send: list[int] = []
        """Signals `queuectl kill` asked for, for the main thread to send to the running job."""
        self._signals_seen = 0
        self._environment = dict(os.environb)  # what every job inherits (decoded once)
        self.store_outage = outage.Outage(log, f"worker {self.info.id}: the store")
        """One outage of the store, shared by the loop and both threads: logged once, not each."""
        self._db: store.Store | None = None

    @property
    def id(self) -> str:
        """This worker's id."""
        return self.info.id

    # --- the state the threads share -------------------------------------------------
    def request_stop(self, mode: str) -> None:
        """Stop claiming; with mode 'now', also stop the running job (it goes back to pending)."""
        with self._lock:
            first = not self.stop.is_set()
            self.stop.set()
            if mode == "now":
                self._now_requested = True
                self.job_abort.set()
        if first:
            log.info("worker %s: stopping (%s)", self.id, mode)
        self.signals.wake()

    def poll_signals(self) -> None:
        """Turn stop signals counted since the last look into stop requests."""
        with self._lock:
            count, seen = self.signals.count, self._signals_seen
            self._signals_seen = count
        if count > seen:
            self.request_stop("graceful" if count == 1 else "now")

    def control(self, claim: models.Claim, request: str) -> None:
        """A control request for the job of `claim`: cancel it, or send it a signal."""
        if request == models.CANCEL:
            with self._lock:
                lease = self._current
                first = self._cancelled is not claim
                if lease is not None and lease.claim is claim and not lease.ended:
                    self._cancelled = claim
                    self.job_abort.set()
                else:
                    first = False
            if first:
                log.info(
                    "job %s attempt %d: cancelled; stopping it", claim.job.id, claim.job.run_count
                )
            return
        if request.startswith(models.SIGNAL_PREFIX):
            signum = int(request.removeprefix(models.SIGNAL_PREFIX))
            with self._lock:
                lease = self._current
                if lease is None or lease.claim is not claim or lease.ended:
                    return
                self._signals_to_send.append(signum)
            log.info(
                "job %s attempt %d: sending signal %d", claim.job.id, claim.job.run_count, signum
            )

    def _next_signal(self) -> int | None:
        """Asked by the executor in the main thread: a signal to send to the running job now."""
        with self._lock:
            return self._signals_to_send.pop(0) if self._signals_to_send else None

    def current(self) -> heartbeat.Lease | None:
        """The running claim, if any."""
        with self._lock:
            return self._current

    def abort_if_current(self, claim: models.Claim, why: str) -> None:
        """Stop the job of `claim` if it is still the running one (not a claim finished since)."""
        with self._lock:
            lease = self._current
            running = lease is not None and lease.claim is claim and not lease.ended
            if running and not self.job_abort.is_set():
                self.job_abort.set()
            else:
                running = False
        if running:
            log.warning(
                "job %s attempt %d: %s; stopping it", claim.job.id, claim.job.run_count, why
            )

    def store_gone(self) -> None:
        """The store's file was deleted or replaced: stop at once, and say so."""
        if self.exit_code != EXIT_STORE_GONE:
            log.error(
                "worker %s: %s was deleted or replaced; stopping (start workers again to serve "
                "the new one)",
                self.id,
                self.db,
            )
        self.exit_code = EXIT_STORE_GONE
        self.request_stop("now")

    def still_current(self) -> bool:
        """Whether the main connection still reaches the store its location names.

        Asked by the maintenance thread: the check only looks at the file system, never at the
        connection, which belongs to the main thread.
        """
        return self._db is None or self._db.still_current()

    def _mark_ended(self, claim: models.Claim) -> None:
        """The job of `claim` has ended: from here a lost lease is the finish's to report."""
        with self._lock:
            if self._current is not None and self._current.claim is claim:
                self._current.ended = True

    def _hold(self, claim: models.Claim | None, taken_at: float) -> None:
        """Make `claim` the running one (its lease taken at `taken_at`, monotonic)."""
        with self._lock:
            self._current = None if claim is None else heartbeat.Lease(claim, taken_at)
            self.job_abort.clear()  # an abort for an earlier job is spent
            self._signals_to_send.clear()
            if self._now_requested:  # under the lock: a `--now` racing this is never lost
                self.job_abort.set()

    # --- the loop ---------------------------------------------------------------------
    def run(self) -> int:
        """Register, then claim and run jobs until a stop request; always deregister."""
        if threading.current_thread() is threading.main_thread():
            # The worker owns its process: its children are its jobs. (A worker run in a thread,
            # as tests do, must not make the whole process the parent of every orphan.)
            proctree.adopt_orphans()
        db = self._db = store.open_store(self.db)
        db.defer_upkeep()  # the maintenance thread does it, off the claim-run-finish path
        beats = heartbeat.Heartbeat(self, self.db)
        upkeep = maintenance.Maintenance(self, self.db)
        # The handlers stay until the worker has deregistered: a second signal arriving during
        # the clean-up must not kill the process before its row is gone.
        with self.signals:
            try:
                self.cfg = config.from_stored(db.get_config())
                db.register_worker(self.info, self.cfg.lease)
                log.info(
                    "worker %s: started (pid %d, queues: %s)",
                    self.id,
                    self.info.pid,
                    ", ".join(self.info.queues) or "all",
                )
                beats.start()
                upkeep.start()
                self._loop(db)
            finally:
                self.stop.set()
                self.exiting.set()
                beats.join()
                upkeep.join()
                try:
                    db.deregister_worker(self.id)  # else pruned once past its deadline
                except errors.StoreUnavailable as exc:
                    log.warning("worker %s: could not deregister: %s", self.id, exc)
                db.close()
                log.info("worker %s: stopped", self.id)
        return self.exit_code

    def _loop(self, db: store.Store) -> None:
        claim: models.Claim | None = None  # claimed as the previous job finished; runs next
        while claim is not None or not self.stop.is_set():
            self.poll_signals()
            try:
                if claim is None:
                    claim = self._claim(db)
                    if claim is None and self.burst and not self.stop.is_set():
                        log.info("worker %s: no job is due; exiting (--burst)", self.id)
                        self.stop.set()
                    if claim is None:
                        if not self.stop.is_set():
                            self._idle(db)
                        continue
                current, claim = claim, None
                claim = self._process(db, current)
            except errors.StoreUnavailable as exc:
                self.store_outage.failed(exc)
                self.stop.wait(self.store_outage.retry_delay())

    def _claim(self, db: store.Store) -> models.Claim | None:
        if self.stop.is_set():
            return None
        taken_at = time.monotonic()
        claim = db.claim(self.id, self.info.host, self.queues, self.cfg.lease)
        self.store_outage.recovered()
        if claim is not None:
            self._hold(claim, taken_at)
        return claim

    def _idle(self, db: store.Store) -> None:
        """Sleep until woken, a signal or stop comes, a waiting job falls due, or poll_interval.

        Enqueue, `dlq retry`, `config set`, a rescue and `worker stop` wake idle workers at
        once, so poll_interval only bounds how late a worker without wake-ups can be.
        """
        timeout = self.cfg.poll_interval
        due = db.next_run_at(self.queues)
        if due is not None:
            timeout = min(timeout, (due - db.now()).total_seconds() + EVENT_SLACK)
        proctree.reap_orphans(0)  # what a job left that was killed but not yet dead at its end
        if timeout > 0 and not self.stop.is_set():
            only_work = self._wait_for_work(db, timeout)
            self.signals.drain()
            if only_work:
                return  # claim at once: a round trip less before the pickup (PostgreSQL)
        stop = db.stop_requested(self.id)
        if stop is not None:
            self.request_stop(stop)

    def _wait_for_work(self, db: store.Store, timeout: float) -> bool:
        """Wait for a wake-up; while they fail (a lost LISTEN connection), poll, backing off.

        True when only new work woke it (see Store.wait_for_work). Wake-ups are a part of the
        store outage of their own: a claim that works meanwhile does not end it, so a listener
        failing again and again is one line in the log.
        """
        try:
            only_work = db.wait_for_work(timeout, self.signals.fd)
            self.store_outage.recovered(WAKE_UPS)
        except errors.StoreUnavailable as exc:
            self.store_outage.failed(exc, WAKE_UPS)
            self.stop.wait(min(timeout, self.store_outage.retry_delay(WAKE_UPS)))
            return False
        return only_work

    def _process(self, db: store.Store, claim: models.Claim) -> models.Claim | None:
        """Run a claimed job and record its attempt; return the next job, claimed meanwhile.

        The next job is claimed in the transaction that records this one, unless a stop was
        asked for.
        """
        job = claim.job
        not_started = self._not_started(claim)
        if not_started is not None:
            outcome = models.Outcome(
                end=models.AttemptEnd.SHUTDOWN,
                started_at=claim.claimed_at,
                ended_at=db.now(),
                error=f"not started: {not_started}",
            )
        else:
            outcome = self._run_job(claim, db.now)
        self._mark_ended(claim)
        if self._cancelled is claim and outcome.end is models.AttemptEnd.SHUTDOWN:
            outcome = replace(outcome, end=models.AttemptEnd.CANCELLED, error="cancelled")
        transition = retry.next_transition(job, outcome, self.cfg, db.now())
        finished, following, taken_at = self._finish(db, claim, outcome, transition)
        self._hold(following, taken_at)  # the heartbeat keeps its lease from now on
        if finished:
            log.info(
                "job %s attempt %d: %s in %.3fs -> %s",
                job.id,
                job.run_count,
                outcome.end.value,
                (outcome.ended_at - outcome.started_at).total_seconds(),
                retry.describe(job, transition),
            )
        else:
            log.warning(
                "job %s attempt %d: lease lost before finish; result discarded",
                job.id,
                job.run_count,
            )
        return following

    def _not_started(self, claim: models.Claim) -> str | None:
        """Why a claimed job must not start, if it must not."""
        if self._now_requested:  # claimed with the previous finish, just before `stop --now`
            return "the worker was stopped at once"
        lease = self.current()
        if lease is not None and lease.claim is claim and time.monotonic() >= lease.held_until:
            # Frozen between the claim and the start: it may be rescued and running elsewhere.
            return "its lease ran out before it started"
        return None

    def _run_job(self, claim: models.Claim, clock: Callable[[], datetime]) -> models.Outcome:
        job = claim.job
        lease = self.current()
        log.debug(
            "job %s attempt %d: started on %s: %s", job.id, job.run_count, self.id, job.command
        )
        return executor.run(
            job.command,
            timeout=job.timeout,
            cwd=job.cwd,
            env={**job.env, **maintenance.job_markers(claim)},  # what a rescue's sweep finds
            inherit=self._environment,
            output_limit=self.cfg.output_limit,
            abort=self._should_abort,
            clock=clock,  # the store's: times recorded agree with the other hosts'
            signals=self._next_signal,
            progress=None if lease is None or lease.claim is not claim else lease.progress,
        )

    def _should_abort(self) -> bool:
        """Asked by the executor every 50 ms, in this (main) thread: stop the running job?

        Signals and the lease's deadline are looked at here too, not only by the heartbeat
        thread, which may be stuck waiting for the store's lock for as long as a minute.
        """
        self.poll_signals()
        lease = self.current()
        if lease is not None and time.monotonic() >= lease.held_until:
            self.abort_if_current(lease.claim, "its lease ran out before a heartbeat renewed it")
        return self.job_abort.is_set()

    def _finish(
        self,
        db: store.Store,
        claim: models.Claim,
        outcome: models.Outcome,
        transition: models.Transition,
    ) -> tuple[bool, models.Claim | None, float]:
        """Record the attempt (and claim the next job), retrying while the store is unavailable.

        The next job is claimed only while no stop was asked for (decided afresh at each try).
        The heartbeat keeps the lease alive meanwhile; once it is lost, another worker recovers
        the job (it runs again: at least once). Returns whether the attempt was recorded, the
        next claim, and when its lease was taken (monotonic).
        """
        while True:
            taken_at = time.monotonic()
            try:
                if self.stop.is_set():
                    finished, following = db.finish(claim, outcome, transition), None
                else:
                    finished, following = db.finish_and_claim(
                        claim, outcome, transition, self.queues, self.cfg.lease
                    )
                self.store_outage.recovered()
                return finished, following, taken_at
            except errors.StoreUnavailable as exc:
                self.store_outage.failed(exc)
                if self._now_requested:
                    raise  # stopping at once: the lease runs out and the job is rescued
                # Not stop.wait: a graceful stop still records the attempt.
                time.sleep(self.store_outage.retry_delay())


def run_worker(
    db: str | Path,
    queues: Sequence[str] = (),
    worker_id: str | None = None,
    burst: bool = False,
) -> int:
    """Run one worker in this process until it is stopped (or idle, with burst); return its code."""
    return Worker(str(db), queues, worker_id, burst).run()
