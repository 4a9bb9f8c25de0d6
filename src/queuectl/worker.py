"""One worker process: claim a job, run it, record the attempt, repeat until stopped.

A heartbeat thread keeps the worker's registration and its claim's lease alive and watches for
stop requests made through the store (`queuectl worker stop`, from any shell or host).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from queuectl import config, errors, executor, models, retry, store

log = logging.getLogger(__name__)

TICK = 0.2
"""Seconds between the heartbeat thread's looks at stop requests while a job runs."""
MAINTENANCE_INTERVAL = 1.0
"""Seconds between a busy worker's sweeps for expired leases, and between config reloads."""
RESCUE_BATCH = 20
EVENT_SLACK = 0.001
"""Seconds an idle worker oversleeps a due time, so that the event has surely passed."""
UPKEEP_LOG_INTERVAL = 60.0
"""Seconds between log lines about failing checkpoints."""
STORE_RETRY = 1.0
"""Seconds a worker waits before trying again when the store is unavailable (disk full, I/O)."""


class _WakeUp(Exception):
    """Raised by a stop signal's handler to end the worker's idle sleep at once."""


def new_worker_id() -> str:
    """A short random worker id."""
    return f"w-{secrets.token_hex(4)}"


def describe(job: models.Job, transition: models.Transition) -> str:
    """Where a job went after an attempt, for the log line."""
    if transition.state is models.JobState.FAILED and transition.run_at is not None:
        return f"failed, retry {job.attempts}/{job.max_retries} at {transition.run_at:%H:%M:%S.%f}"
    return transition.state.value


class Worker:
    """One worker process's loop; `run()` returns when it has stopped."""

    def __init__(self, db: str, queues: Sequence[str] = (), worker_id: str | None = None) -> None:
        self.db = db
        self.queues = tuple(queues) or None
        self.info = models.WorkerInfo(
            id=worker_id or new_worker_id(),
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=tuple(queues),
            started_at=datetime.now(UTC),
            heartbeat_at=datetime.now(UTC),
        )
        self.stop = threading.Event()
        self.job_abort = threading.Event()
        self.cfg = config.Config()
        self._current: models.Claim | None = None
        self._lock = threading.Lock()
        self._reregister = threading.Event()
        self._exiting = threading.Event()
        self._now_requested = False
        self._sleeping = False  # the main thread is in its idle wait (see _on_signal)
        self._parent = os.getppid()
        self._environment = dict(os.environb)  # what every job inherits (decoded once)
        self._signals = 0
        self._upkeep_quiet_until = 0.0

    @property
    def id(self) -> str:
        """This worker's id."""
        return self.info.id

    # --- stop requests ------------------------------------------------------------
    def request_stop(self, mode: str) -> None:
        """Stop claiming; with mode 'now', also stop the running job (it goes back to pending)."""
        if not self.stop.is_set():
            log.info("worker %s: stopping (%s)", self.id, mode)
        self.stop.set()
        if mode == "now":
            self._now_requested = True
            self.job_abort.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        self.request_stop("graceful" if self._signals == 1 else "now")
        if self._sleeping:
            raise _WakeUp  # end the idle sleep now; raised nowhere else, so no work is cut short

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # --- the loop -----------------------------------------------------------------
    def run(self) -> None:
        """Register, then claim and run jobs until a stop request; always deregister."""
        db = store.open_store(self.db)
        db.defer_upkeep()  # the heartbeat thread does it, off the claim-run-finish path
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        # The handlers stay until the worker has deregistered: a second signal arriving during
        # the clean-up must not kill the process before its row is gone.
        with self._signal_handlers():
            try:
                self.cfg = config.from_stored(db.get_config())
                db.register_worker(self.info)
                log.info(
                    "worker %s: started (pid %d, queues: %s)",
                    self.id,
                    self.info.pid,
                    ", ".join(self.info.queues) or "all",
                )
                heartbeat.start()
                self._loop(db)
            finally:
                self.stop.set()
                self._exiting.set()
                if heartbeat.is_alive():
                    heartbeat.join()
                with contextlib.suppress(errors.StoreUnavailable):
                    db.deregister_worker(self.id)  # else pruned once its heartbeat is stale
                db.close()
                log.info("worker %s: stopped", self.id)

    def _loop(self, db: store.Store) -> None:
        next_maintenance = 0.0
        claim: models.Claim | None = None  # claimed as the previous job finished; runs next
        while claim is not None or not self.stop.is_set():
            try:
                if claim is None:
                    if time.monotonic() >= next_maintenance:
                        self._maintain(db)
                        next_maintenance = time.monotonic() + MAINTENANCE_INTERVAL
                    claim = db.claim(self.id, self.info.host, self.queues, self.cfg.lease)
                    if claim is None:
                        self._idle(db)
                        next_maintenance = 0.0  # after a sleep, look for expired leases first
                        continue
                current, claim = claim, None
                claim = self._process(db, current, next_maintenance)
            except _WakeUp:
                continue  # a stop signal ended the idle sleep; the loop condition sees it
            except errors.StoreUnavailable as exc:
                log.error("worker %s: %s; trying again in %gs", self.id, exc, STORE_RETRY)
                self.stop.wait(STORE_RETRY)

    def _maintain(self, db: store.Store) -> None:
        """Reload config, re-register if pruned, and recover jobs of dead workers."""
        self.cfg = config.from_stored(db.get_config())
        if self._reregister.is_set():
            self._reregister.clear()
            db.register_worker(self.info)
        for claim in db.expired_claims(RESCUE_BATCH):
            self._rescue(db, claim)
        db.prune_workers(silent_for=2 * self.cfg.lease)

    def _rescue(self, db: store.Store, claim: models.Claim) -> None:
        now = db.now()
        outcome = models.Outcome(
            end=models.AttemptEnd.WORKER_LOST,
            started_at=claim.claimed_at,
            ended_at=now,
            error=f"worker {claim.worker_id} lost (its lease expired)",
        )
        transition = retry.next_transition(claim.job, outcome, self.cfg, now)
        if db.rescue(claim, outcome, transition):
            log.warning(
                "job %s attempt %d: worker %s lost -> %s",
                claim.job.id,
                claim.job.run_count,
                claim.worker_id,
                describe(claim.job, transition),
            )

    def _idle(self, db: store.Store) -> None:
        """Sleep until woken, a waiting job falls due, a lease runs out, or poll_interval ends.

        Enqueue, `dlq retry`, `config set` and `worker stop` wake idle workers at once, so
        poll_interval only bounds how late a worker on a platform without wake-ups can be.
        """
        now = db.now()
        timeout = self.cfg.poll_interval
        for event in (db.next_run_at(self.queues), db.next_lease_expiry()):
            if event is not None:
                timeout = min(timeout, (event - now).total_seconds() + EVENT_SLACK)
        if timeout > 0 and not self.stop.is_set():
            self._sleeping = True  # a stop signal from here on raises _WakeUp (caught in _loop)
            try:
                db.wait_for_work(timeout)
            finally:
                self._sleeping = False
        self._check_stop(db)

    def _process(
        self, db: store.Store, claim: models.Claim, next_maintenance: float
    ) -> models.Claim | None:
        """Run a claimed job and record its attempt; return the next job, claimed meanwhile.

        The next job is claimed in the transaction that records this one, unless a stop was
        asked for or the maintenance is due (the loop claims after it).
        """
        job = claim.job
        with self._lock:
            self._current = claim
        self.job_abort.clear()  # an abort for an earlier job's lost lease is spent
        if self._now_requested:  # read after the clear: a `--now` racing it is never lost
            # Claimed with the previous job's finish, just before `stop --now`: not started.
            self.job_abort.set()
            outcome = models.Outcome(
                end=models.AttemptEnd.SHUTDOWN,
                started_at=claim.claimed_at,
                ended_at=db.now(),
                error="not started: the worker was stopped at once",
            )
        else:
            outcome = self._run_job(claim)
        transition = retry.next_transition(job, outcome, self.cfg, db.now())
        following: models.Claim | None = None
        try:
            finished, following = self._finish(db, claim, outcome, transition, next_maintenance)
        finally:
            with self._lock:
                self._current = following  # the heartbeat keeps its lease from now on
        if finished:
            log.info(
                "job %s attempt %d: %s in %.3fs -> %s",
                job.id,
                job.run_count,
                outcome.end.value,
                (outcome.ended_at - outcome.started_at).total_seconds(),
                describe(job, transition),
            )
        else:
            log.warning(
                "job %s attempt %d: lease lost before finish; result discarded",
                job.id,
                job.run_count,
            )
        return following

    def _run_job(self, claim: models.Claim) -> models.Outcome:
        job = claim.job
        log.debug(
            "job %s attempt %d: started on %s: %s", job.id, job.run_count, self.id, job.command
        )
        return executor.run(
            job.command,
            timeout=job.timeout,
            cwd=job.cwd,
            env={
                **job.env,
                "QUEUECTL_JOB_ID": job.id,
                "QUEUECTL_ATTEMPT": str(job.run_count),
                "QUEUECTL_WORKER_ID": self.id,
            },
            inherit=self._environment,
            output_limit=self.cfg.output_limit,
            abort=self.job_abort,
        )

    def _finish(
        self,
        db: store.Store,
        claim: models.Claim,
        outcome: models.Outcome,
        transition: models.Transition,
        next_maintenance: float,
    ) -> tuple[bool, models.Claim | None]:
        """Record the attempt (and claim the next job), retrying while the store is unavailable.

        The next job is claimed only while no stop was asked for and the maintenance is not due
        (decided afresh at each try). The heartbeat keeps the lease alive meanwhile; once it is
        lost, another worker recovers the job (it runs again: at least once).
        """
        while True:
            try:
                if not self.stop.is_set() and time.monotonic() < next_maintenance:
                    return db.finish_and_claim(
                        claim, outcome, transition, self.queues, self.cfg.lease
                    )
                return db.finish(claim, outcome, transition), None
            except errors.StoreUnavailable as exc:
                if self.job_abort.is_set():
                    raise
                log.error("job %s: cannot record the attempt: %s; retrying", claim.job.id, exc)
                time.sleep(STORE_RETRY)

    # --- heartbeat thread -----------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        db = store.open_store(self.db)
        next_beat = time.monotonic() + self.cfg.lease / 3
        try:
            while not self._exiting.wait(TICK):
                if os.getppid() != self._parent:
                    self.request_stop("graceful")  # the supervisor is gone
                try:
                    if time.monotonic() >= next_beat:
                        self._beat(db)
                        next_beat = time.monotonic() + self.cfg.lease / 3
                    elif self._busy():
                        self._check_stop(db)
                except errors.StoreUnavailable as exc:
                    # Keep beating: a dead heartbeat thread would let a live job be recovered.
                    log.error("worker %s: heartbeat failed: %s", self.id, exc)
                self._upkeep(db)  # after the beat, which a slow checkpoint must not hold up
        finally:
            db.close()

    def _upkeep(self, db: store.Store) -> None:
        try:
            db.upkeep()
        except errors.StoreUnavailable as exc:  # e.g. a full disk; the beats go on regardless
            if time.monotonic() >= self._upkeep_quiet_until:
                log.warning("worker %s: checkpoint failed: %s", self.id, exc)
                self._upkeep_quiet_until = time.monotonic() + UPKEEP_LOG_INTERVAL

    def _check_stop(self, db: store.Store) -> None:
        stop = db.stop_requested(self.id)
        if stop is not None:
            self.request_stop(stop)

    def _busy(self) -> bool:
        with self._lock:
            return self._current is not None

    def _beat(self, db: store.Store) -> None:
        with self._lock:
            claim = self._current
        reply = db.heartbeat(self.id, claim, self.cfg.lease)
        if reply is None:
            self._reregister.set()
            return
        if claim is not None and not reply.lease_held:
            with self._lock:
                still_running = self._current is claim  # not a claim finished meanwhile
                if still_running:
                    self.job_abort.set()
            if still_running:
                log.warning("job %s: lease lost; stopping it", claim.job.id)
        if reply.stop is not None:
            self.request_stop(reply.stop)


def run_worker(db: str | Path, queues: Sequence[str] = (), worker_id: str | None = None) -> None:
    """Run one worker in this process until it is stopped."""
    Worker(str(db), queues, worker_id).run()
