"""Run one command: /bin/sh -c (or directly, when plain) in its own session, timeout enforced.

The only module that starts (and kills) a job's processes. Every process the command starts is
the job, whatever session or group it moves to: on a timeout or an abort they all get SIGTERM,
then SIGKILL after a grace period, and whatever is left when the command itself exits is killed,
so nothing the job started outlives its attempt. A worker calls adopt_orphans() once, so that a
job's processes whose parent exits are re-parented to the worker, where they can be found (with
`setsid cmd &` they leave the group and would otherwise go to init). It knows nothing of the store.
"""

from __future__ import annotations

import contextlib
import functools
import os
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from queuectl import models, plaincmd, proctree

KILL_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when a job is stopped."""
DRAIN_GRACE = 1.0
"""Seconds the output pipes may stay open once every process of the attempt was killed (only a
process outside the job's tree, sent a descriptor over a socket, could hold them)."""
LEFTOVER_CHECK = 0.05
"""Seconds between looks for processes that outlived the command while its pipes stay open."""
READ_CHUNK = 65536
NOT_STARTED_CODES = (126, 127)
"""Exit codes with which /bin/sh says it could not find or execute the command."""


Abort = Callable[[], bool]
"""Asked while a command runs: True stops it (an Event's is_set, or a worker's own check)."""


def _asker(abort: threading.Event | Abort | None) -> Abort | None:
    return abort.is_set if isinstance(abort, threading.Event) else abort


class TailBuffer:
    """Keeps the last `limit` bytes of a stream, never holding much more than that.

    Safe to read from another thread while the executor adds to it (the worker's heartbeat
    saves a running job's output so far).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._lock = threading.Lock()
        self.dropped = 0
        self.total = 0
        """Bytes added in all."""

    def add(self, data: bytes) -> None:
        """Append data, dropping the oldest bytes beyond the limit."""
        with self._lock:
            self._chunks.append(data)
            self._size += len(data)
            self.total += len(data)
            while self._size - len(self._chunks[0]) >= self.limit:
                self._size -= len(self._chunks[0])
                self.dropped += len(self._chunks.popleft())

    def last(self, count: int) -> tuple[bytes, int]:
        """The last `count` bytes kept (no marker), and how many bytes came in all."""
        with self._lock:
            data = b"".join(self._chunks)
            return data[-count:] if count else b"", self.total

    def value(self) -> bytes:
        """The kept tail, behind a marker saying how much was cut when anything was."""
        with self._lock:
            data = b"".join(self._chunks)
        cut = max(len(data) - self.limit, 0)
        if not cut and not self.dropped:
            return data
        marker = f"[queuectl: {self.dropped + cut} earlier bytes truncated]\n".encode()
        return marker + data[cut:]


class Progress:
    """A running command's output so far, for another thread to read while it runs."""

    def __init__(self) -> None:
        self.stdout: TailBuffer | None = None
        self.stderr: TailBuffer | None = None
        self.pid: int | None = None
        """The command's pid (its process group), once started."""

    def snapshot(self, limit: int) -> tuple[bytes, bytes, int, int] | None:
        """The last `limit` bytes of stdout and stderr and their totals; None before the start."""
        out, err = self.stdout, self.stderr
        if out is None or err is None:
            return None
        stdout, out_total = out.last(limit)
        stderr, err_total = err.last(limit)
        return stdout, stderr, out_total, err_total


@dataclass
class _Child:
    """A started command: its pid (= its process group), the read ends of its output pipes."""

    pid: int
    stdout: int
    stderr: int
    reap: Callable[[], int]
    """Wait for the exit status (as subprocess's returncode: -N for signal N)."""


@dataclass
class _Run:
    """The state of one running command, for the event loop."""

    child: _Child
    buffers: dict[int, TailBuffer]
    deadline: float | None
    exited: bool = False
    stop_reason: models.AttemptEnd | None = None
    term_sent_at: float | None = None
    killed: bool = False
    drain_until: float | None = None
    """Once the command has exited and its processes are killed: when to stop reading."""
    # poll(2), not epoll: three fds, and no kernel object to create, fill and close per job
    selector: selectors.BaseSelector = field(default_factory=selectors.PollSelector)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_job(leader: int, sig: int) -> None:
    """Signal every process of the job.

    That is the command's group, all its descendants (some may have left the group or session),
    and the orphans this process adopted from it.
    """
    _signal_group(leader, sig)
    adopted = proctree.orphans(leader)
    proctree.signal_all(proctree.descendants([leader, *adopted]), sig)
    proctree.signal_all(adopted, sig)


def _kill_leftovers(leader: int) -> bool:
    """After the command exited: SIGKILL what is left of the job; True when something was."""
    _signal_group(leader, signal.SIGKILL)
    adopted = proctree.orphans(leader)
    if not adopted:
        return False
    # Listed before any is killed (as in _signal_job): a child killed first could otherwise
    # hand its own children on before they are seen.
    proctree.signal_all([*adopted, *proctree.descendants(adopted)], signal.SIGKILL)
    proctree.reap_orphans(leader)  # after the signals: a reaped pid may be reused at once
    return True


def _spawn(
    command: str, cwd: str | None, env: Mapping[str, str], inherit: Mapping[bytes, bytes] | None
) -> _Child:
    """Start `/bin/sh -c command` in a new session, stdin from /dev/null, both outputs piped.

    A plain command (see plaincmd) starts directly instead, with the PWD sh would have given it.
    posix_spawn does it in one call, converting the environment in C; subprocess.Popen costs
    about 0.1 ms of Python a job more, so it only starts commands whose working directory is
    not this process's (posix_spawn has no chdir before Python 3.13). Every other descriptor of
    this process is close-on-exec: Python opens them so (PEP 446), and inherited ones are sealed
    once.
    """
    _seal_inherited_descriptors()
    base = os.environb if inherit is None else inherit
    environment = {**base, **{os.fsencode(k): os.fsencode(v) for k, v in env.items()}}
    here = _working_directory()
    path = environment.get(b"PATH")
    direct = plaincmd.argv(command, None if path is None else os.fsdecode(path))
    if direct is None:
        program, argv = "/bin/sh", ["/bin/sh", "-c", command]
    else:
        (program, argv), where = direct, cwd or here
        if where is not None:
            environment[b"PWD"] = os.fsencode(_shell_pwd(environment.get(b"PWD"), where))
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        if cwd is None or cwd == here:
            pid = os.posix_spawn(
                program,
                argv,
                environment,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
                setsid=True,
                setsigdef=_RESTORED_SIGNALS,
            )
            return _Child(pid, out_r, err_r, functools.partial(_reap, pid))
        proc = subprocess.Popen(
            argv,
            executable=program,
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            start_new_session=True,
            close_fds=True,
        )
        return _Child(proc.pid, out_r, err_r, proc.wait)
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)


_RESTORED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)
"""Signals Python ignores that a command expects at their default (as Popen restores them)."""


@functools.cache
def _seal_inherited_descriptors() -> None:
    """Make the descriptors this process inherited (past 0-2) close-on-exec, once.

    A shell may hand its children open descriptors; Python itself opens every descriptor
    close-on-exec, so after this nothing but stdin, stdout and stderr passes to a command.
    """
    try:
        fds = [int(entry.name) for entry in Path("/proc/self/fd").iterdir()]
    except OSError:
        fds = list(range(3, 256))
    for fd in fds:
        if fd > 2:
            with contextlib.suppress(OSError):
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)


def _shell_pwd(inherited: bytes | None, where: str) -> str:
    """The PWD sh exports to its commands when started in `where`.

    The inherited PWD when it is absolute and names that directory (a path through a symlink
    stays as given), else the directory's physical path, as dash does.
    """
    if inherited is not None and inherited.startswith(b"/"):
        with contextlib.suppress(OSError):
            if os.path.samefile(inherited, where):  # noqa: PTH121 - bytes and str, no Path
                return os.fsdecode(inherited)
    return os.path.realpath(where)


def _working_directory() -> str | None:
    try:
        return os.getcwd()  # noqa: PTH109 - a str to compare, not a Path to build
    except OSError:  # deleted: every command with a cwd goes through Popen's chdir
        return None


def _reap(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _has_exited(pid: int) -> bool:
    """Whether the command has exited, without reaping it (so its pgid stays ours)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None  # not Linux >= 5.3: fall back to polling


def _escalate(run: _Run, abort: Abort | None, kill_grace: float) -> None:
    """Send TERM when the deadline passes or an abort comes, and KILL after the grace period.

    Once the command has exited its processes are dead already; then the deadline, an abort or
    the drain grace only ends the wait for its pipes.
    """
    now = time.monotonic()
    timed_out = run.deadline is not None and now >= run.deadline
    aborted = abort is not None and abort()
    if run.exited:
        _end_drain(run, now, timed_out or aborted)
        return
    if run.stop_reason is None and (timed_out or aborted):
        run.stop_reason = models.AttemptEnd.TIMEOUT if timed_out else models.AttemptEnd.SHUTDOWN
        _signal_job(run.child.pid, signal.SIGTERM)
        run.term_sent_at = now
    if run.term_sent_at is not None and not run.killed and now >= run.term_sent_at + kill_grace:
        _signal_job(run.child.pid, signal.SIGKILL)
        run.killed = True


def _end_drain(run: _Run, now: float, cut_short: bool) -> None:
    """The command has exited but its pipes are open: kill what holds them, wait a little."""
    if not run.selector.get_map():
        return
    if _kill_leftovers(run.child.pid):
        run.drain_until = now + DRAIN_GRACE  # something lived on: its pipes close soon
    if cut_short or (run.drain_until is not None and now >= run.drain_until):
        for key in list(run.selector.get_map().values()):
            run.selector.unregister(key.fd)  # stop waiting: nothing of the job is left


def _next_wait(
    run: _Run, pidfd: int | None, abort: Abort | None, kill_grace: float
) -> float | None:
    now = time.monotonic()
    waits: list[float] = []
    if run.deadline is not None and run.stop_reason is None:
        waits.append(run.deadline - now)
    if run.term_sent_at is not None and not run.killed and not run.exited:
        waits.append(run.term_sent_at + kill_grace - now)
    if run.exited:
        waits.append(LEFTOVER_CHECK)  # the pipes stay open: look for what holds them
    if abort is not None or (pidfd is None and not run.exited):
        waits.append(0.05)  # abort is asked, it has no fd; without a pidfd exit is polled
    return max(min(waits), 0.0) if waits else None


def _on_leader_exit(run: _Run) -> None:
    """The command has exited (not yet reaped, so its pgid is still ours): end what it left."""
    run.exited = True
    run.drain_until = time.monotonic() + DRAIN_GRACE
    _kill_leftovers(run.child.pid)


def _pump(
    run: _Run,
    pidfd: int | None,
    abort: Abort | None,
    kill_grace: float,
    signals: Callable[[], int | None] | None,
) -> None:
    """Read output and watch the clock until the command has exited and both pipes are closed."""
    while run.selector.get_map() or not run.exited:
        for key, _ in run.selector.select(_next_wait(run, pidfd, abort, kill_grace)):
            if key.fd == pidfd:
                run.selector.unregister(pidfd)
                _on_leader_exit(run)
                continue
            data = os.read(key.fd, READ_CHUNK)
            if data:
                run.buffers[key.fd].add(data)
            else:
                run.selector.unregister(key.fd)
        if pidfd is None and not run.exited and _has_exited(run.child.pid):
            _on_leader_exit(run)
        _escalate(run, abort, kill_grace)
        if signals is not None and not run.exited:
            sig = signals()
            if sig is not None:
                _signal_job(run.child.pid, sig)


def _classify(run: _Run, code: int, stderr: bytes) -> tuple[models.AttemptEnd, str | None]:
    if run.stop_reason is not None:
        return run.stop_reason, None
    if code == 0:
        return models.AttemptEnd.SUCCEEDED, None
    if code in NOT_STARTED_CODES:
        last = stderr.decode(errors="replace").strip().splitlines()
        return models.AttemptEnd.NOT_FOUND, (last[-1] if last else f"exit code {code}")
    return models.AttemptEnd.FAILED, None


def run(
    command: str,
    *,
    timeout: float | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    inherit: Mapping[bytes, bytes] | None = None,
    output_limit: int = 1024 * 1024,
    abort: threading.Event | Abort | None = None,
    kill_grace: float = KILL_GRACE,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    signals: Callable[[], int | None] | None = None,
    progress: Progress | None = None,
) -> models.Outcome:
    """Run `command` (sh -c, or directly when plain) and say how it ended, with its output tails.

    Args:
        command: the shell command.
        timeout: seconds before the process group is stopped (TERM, then KILL); None for none.
        cwd: working directory.
        env: variables added to the inherited environment.
        inherit: the environment the command starts from (default: this process's); a caller
            starting many commands passes a snapshot once taken, `dict(os.environb)`.
        output_limit: bytes of stdout and of stderr kept (the last ones).
        abort: an Event, or a function asked every 50 ms: when set (or true), the job's
            processes are stopped and the outcome is SHUTDOWN.
        kill_grace: seconds between TERM and KILL.
        clock: what the start and end times are read from; a worker passes its store's clock
            (on PostgreSQL, the server's: this host's wall clock may be off).
        signals: asked as often as `abort` (it must be given too): a signal number it returns
            is sent to every process of the job (`queuectl kill`); the attempt then ends as the
            signal makes it end.
        progress: filled with the output buffers, which another thread may read meanwhile.
    """
    started = clock()
    try:
        child = _spawn(command, cwd, env or {}, inherit)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the command or env
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        filename = getattr(exc, "filename", None)
        return models.Outcome(
            end=models.AttemptEnd.NOT_FOUND,
            started_at=started,
            ended_at=clock(),
            error=f"could not start: {detail}" + (f" ({filename})" if filename else ""),
        )
    out, err = child.stdout, child.stderr
    deadline = time.monotonic() + timeout if timeout else None
    job = _Run(
        child=child,
        buffers={out: TailBuffer(output_limit), err: TailBuffer(output_limit)},
        deadline=deadline,
    )
    if progress is not None:
        progress.stdout, progress.stderr = job.buffers[out], job.buffers[err]
        progress.pid = child.pid
    pidfd = _open_pidfd(child.pid)
    with job.selector:
        job.selector.register(out, selectors.EVENT_READ)
        job.selector.register(err, selectors.EVENT_READ)
        if pidfd is not None:
            job.selector.register(pidfd, selectors.EVENT_READ)
        try:
            try:
                _pump(job, pidfd, _asker(abort), kill_grace, signals)
            except BaseException:
                _signal_job(child.pid, signal.SIGKILL)  # no job outlives its attempt
                child.reap()
                raise
            code = child.reap()
            proctree.reap_orphans(child.pid)
        finally:
            if pidfd is not None:
                os.close(pidfd)
            os.close(out)
            os.close(err)
    stderr = job.buffers[err].value()
    end, error = _classify(job, code, stderr)
    return models.Outcome(
        end=end,
        started_at=started,
        ended_at=clock(),
        exit_code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        pid=child.pid,
        error=error,
        stdout=job.buffers[out].value(),
        stderr=stderr,
    )
