"""The chaos harness's own parts: each check on made-up evidence, the job script's lock, the plans.

These run in `make test` (no workers, well under a second), so the harness stays correct while
the chaos run itself is skipped.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from queuectl.store import open_store
from tests import pgcluster
from tests.chaos import checks, harness, procs, server
from tests.helpers import wait_until

T = 1_800_000_000.0  # a made-up moment, in Unix seconds


def _line(kind: str, job: str, attempt: int, at: float, pid: int = 100) -> checks.Line:
    return checks.Line(kind, job, attempt, pid, T + at)


def _record(
    job: str, number: int, outcome: str, started: float, ended: float, worker: str = "w-1"
) -> checks.Recorded:
    return checks.Recorded(job, number, outcome, worker, T + started, T + ended)


def _evidence(**changes: object) -> checks.Evidence:
    """Two jobs that ran correctly: j1 once, j2 lost with its worker and then retried."""
    ev = checks.Evidence(
        enqueued=["j1", "j2"],
        states={"j1": "completed", "j2": "completed"},
        total_jobs=2,
        attempts={
            "j1": [_record("j1", 1, "succeeded", 0.0, 1.0)],
            "j2": [
                _record("j2", 1, "worker_lost", 0.0, 3.0, worker="w-2"),
                _record("j2", 2, "succeeded", 4.0, 5.0, worker="w-3"),
            ],
        },
        lines=[
            _line("start", "j1", 1, 0.1),
            _line("end", "j1", 1, 0.9),
            _line("start", "j2", 1, 0.1, pid=200),
            _line("start", "j2", 2, 4.1, pid=300),
            _line("end", "j2", 2, 4.9, pid=300),
        ],
        kills=[checks.Kill("w-2", 42, T + 0.5, "SIGKILL worker")],
    )
    for name, value in changes.items():
        setattr(ev, name, value)
    return ev


def _broken(ev: checks.Evidence) -> dict[str, list[str]]:
    return {name: found for name, found in checks.evaluate(ev).items() if found}


def test_a_correct_run_breaks_nothing():
    assert _broken(_evidence()) == {}


def test_jobs_missing_unfinished_or_stuck_are_reported():
    ev = _evidence(
        enqueued=["j1", "j2", "j3", "j4"],
        states={"j1": "completed", "j2": "processing", "j3": None, "j4": "failed"},
        total_jobs=3,
    )
    broken = _broken(ev)
    assert broken.keys() == {"all_final", "none_lost", "none_stuck"}
    assert broken["all_final"] == ["j2: processing", "j4: failed"]
    assert broken["none_stuck"] == ["j2: still processing"]
    assert len(broken["none_lost"]) == 2  # j3 missing, and 3 jobs stored for 4 enqueued


def test_an_overlap_line_names_the_run_that_held_the_lock():
    # j2's first run outlives its worker_lost record (3.0) and still holds the lock at 4.05.
    ev = _evidence()
    ev.lines = [line for line in ev.lines if line.job != "j2" or line.attempt != 2]
    ev.lines += [_line("overlap", "j2", 2, 4.05, pid=301), _line("end", "j2", 1, 4.5, pid=200)]
    ev.attempts["j2"][1] = _record("j2", 2, "failed", 4.0, 4.1, worker="w-3")
    broken = _broken(ev)
    assert set(broken) == {"no_overlap_lines", "contained"}
    [overlap] = broken["no_overlap_lines"]
    assert "j2 attempt 2 found the job's lock held" in overlap
    assert "attempt 1 (recorded worker_lost" in overlap and "wrote a end line" in overlap
    [late] = broken["contained"]
    assert "j2 attempt 1: a end line" in late and "1.50s after the attempt ended" in late


def test_runs_overlapping_in_time_are_reported():
    ev = _evidence()
    ev.lines += [_line("end", "j2", 1, 4.5, pid=200)]
    ev.attempts["j2"][0] = _record("j2", 1, "worker_lost", 0.0, 4.6, worker="w-2")
    [concurrent] = _broken(ev)["no_concurrent_runs"]
    assert "attempt 2 started" in concurrent and "before attempt 1 ended" in concurrent


def test_an_attempt_number_started_twice_is_reported():
    ev = _evidence()
    ev.lines.append(_line("start", "j1", 1, 0.2, pid=999))
    [twice] = _broken(ev)["no_concurrent_runs"]
    assert "j1 attempt 1 started 2 times" in twice


def test_history_and_records_must_match_both_ways():
    ev = _evidence()
    ev.lines.append(_line("start", "j1", 2, 2.0))  # ran, never recorded
    ev.attempts["j2"].append(_record("j2", 3, "failed", 6.0, 7.0))  # recorded, never ran
    broken = _broken(ev)
    assert [p.split(" ran ")[0] for p in broken["starts_recorded"]] == ["j1 attempt 2"]
    assert broken["attempts_have_starts"] == [
        "j2 attempt 3 is recorded as failed but never wrote a start line"
    ]


def test_a_lost_attempt_needs_no_start_line():
    ev = _evidence()
    ev.lines = [line for line in ev.lines if (line.job, line.attempt) != ("j2", 1)]
    assert _broken(ev) == {}


def test_unfinished_jobs_are_not_checked_against_their_records():
    ev = _evidence(states={"j1": "processing", "j2": "completed"})
    ev.attempts["j1"] = []  # its attempt is running: not recorded yet
    assert set(_broken(ev)) == {"all_final", "none_stuck"}


def test_gaps_in_attempt_numbers_are_reported():
    ev = _evidence()
    ev.attempts["j1"] = [_record("j1", 2, "succeeded", 0.0, 1.0)]
    ev.lines = [line for line in ev.lines if line.job != "j1"]
    ev.lines += [_line("start", "j1", 2, 0.1), _line("end", "j1", 2, 0.9)]
    assert _broken(ev) == {"attempt_numbers": ["j1: attempts numbered [2]"]}


def test_a_line_before_its_attempt_started_is_reported():
    ev = _evidence()
    ev.lines.append(_line("child", "j2", 2, 3.0, pid=301))
    [early] = _broken(ev)["contained"]
    assert "1.00s before the attempt started" in early


def test_lines_within_the_tolerance_pass():
    ev = _evidence()
    ev.lines.append(_line("child", "j1", 1, 1.0 + checks.TOLERANCE / 2))
    assert _broken(ev) == {}


def test_a_killed_worker_records_nothing_after_its_death():
    ev = _evidence()
    ev.attempts["j2"][0] = _record("j2", 1, "failed", 0.0, 3.0, worker="w-2")
    [wrong] = _broken(ev)["killed_are_lost"]
    assert "j2 attempt 1 ran on worker w-2" in wrong and "recorded as failed" in wrong


def test_what_a_killed_worker_recorded_before_its_death_stands():
    ev = _evidence()
    ev.kills = [checks.Kill("w-1", 42, T + 1.5, "SIGKILL worker")]  # after j1's success
    assert _broken(ev) == {}


def test_observations_of_the_run_are_passed_through():
    ev = _evidence(
        survivors=["pid 7: sleep 3"],
        dead_listed=["worker w-9 listed"],
        unstopped=["worker pid 8"],
        cli_problems=["show j1 differs"],
    )
    assert set(_broken(ev)) == {"no_survivors", "no_dead_listed", "clean_stop", "cli_agrees"}


def test_a_broken_history_is_reported():
    lines, malformed = checks.parse_history("start j1 1 100 5.5\nstart j1\nbogus j 1 2 3\n")
    assert lines == [checks.Line("start", "j1", 1, 100, 5.5)]
    assert malformed == ["start j1", "bogus j 1 2 3"]
    broken = _broken(_evidence(lines=[], malformed=malformed))
    assert len(broken["history_sane"]) == 3  # two malformed lines, and no start line at all


def test_a_batch_stored_in_part_is_a_loss():
    broken = _broken(_evidence(store_problems=["enqueue of batch-2.jsonl stored 3 of its 50"]))
    assert broken == {"none_lost": ["enqueue of batch-2.jsonl stored 3 of its 50"]}


def test_every_invariant_has_a_test_case_name():
    assert all(name.isidentifier() for name in checks.INVARIANTS)


# --- the job script, on real processes ------------------------------------------------------


MARKER = f"CHAOS_TEST={uuid.uuid4().hex}"
"""Carried by this module's job processes, so that it kills only its own."""


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    (tmp_path / "locks").mkdir()
    (tmp_path / "job.sh").write_text(harness.JOB_SCRIPT)
    (tmp_path / "history").touch()
    return tmp_path


def _job(run_dir: Path, job: str, attempt: int, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CHAOS_DIR": str(run_dir),
        "QUEUECTL_JOB_ID": job,
        "QUEUECTL_ATTEMPT": str(attempt),
        "CHAOS_TEST": MARKER.partition("=")[2],
    }
    return subprocess.Popen(
        ["sh", str(run_dir / "job.sh"), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _history(run_dir: Path) -> list[checks.Line]:
    lines, malformed = checks.parse_history((run_dir / "history").read_text())
    assert malformed == []
    return lines


def test_the_script_writes_start_and_end_and_its_exit_code(run_dir: Path):
    assert _job(run_dir, "j1", 1, "fail", "1").wait(timeout=10) == 3
    assert _job(run_dir, "j1", 2, "fail", "1").wait(timeout=10) == 0
    lines = _history(run_dir)
    assert [(line.kind, line.attempt) for line in lines] == [
        ("start", 1),
        ("end", 1),
        ("start", 2),
        ("end", 2),
    ]
    assert lines[0].at <= lines[1].at <= lines[2].at


def test_a_run_finds_the_lock_taken_while_an_earlier_one_holds_it(run_dir: Path):
    with (run_dir / "locks" / "j1").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert _job(run_dir, "j1", 2, "instant").wait(timeout=10) == 99
    assert [(line.kind, line.attempt) for line in _history(run_dir)] == [("overlap", 2)]


def test_a_leftover_child_keeps_the_lock_after_its_parent_exits(run_dir: Path):
    # The escaping kind: a setsid child with its output closed, the case a group kill misses.
    first = _job(run_dir, "j1", 1, "bg", "30", "setsid-quiet", "0")
    try:
        assert first.wait(timeout=10) == 0
        assert _job(run_dir, "j1", 2, "instant").wait(timeout=10) == 99
    finally:
        for pid in procs.marked(MARKER):
            procs.send(pid, signal.SIGKILL, MARKER)
    wait_until(lambda: not procs.marked(MARKER), 10, "the child to die")
    assert _job(run_dir, "j1", 3, "instant").wait(timeout=10) == 0
    kinds = [(line.kind, line.attempt) for line in _history(run_dir)]
    assert kinds == [("start", 1), ("end", 1), ("overlap", 2), ("start", 3), ("end", 3)]


# --- the plans ----------------------------------------------------------------------------


def test_a_seed_gives_the_same_jobs():
    profile = harness.PROFILES["quick"]
    first = harness.make_plans(harness.seeded("7"), profile)
    assert first == harness.make_plans(harness.seeded("7"), profile)
    assert len(first) == profile.jobs
    assert {plan.kind for plan in first} >= {"instant", "sleep", "fail", "bg", "noterm"}


def test_without_escapes_no_job_leaves_a_child_with_its_output_closed():
    profile = harness.PROFILES["quick"]
    plans = harness.make_plans(harness.seeded("7"), profile, escapes=False)
    assert not any("setsid-quiet" in plan.args for plan in plans)
    assert any(
        "setsid-quiet" in plan.args for plan in harness.make_plans(harness.seeded("7"), profile)
    )


# --- the PostgreSQL server faults -----------------------------------------------------------


def test_outages_tell_calls_that_met_a_fault_from_those_that_did_not():
    now = [T]
    outages = server.Outages(clock=lambda: now[0])
    first = outages.begin()
    now[0] = T + 4.0
    outages.end(first)
    assert outages.touches(T - 2.0, T - 1.0) is False  # before
    assert outages.touches(T - 1.0, T + 0.5) is True  # began before, ended during
    assert outages.touches(T + 4.0 + server.OUTAGE_SLACK / 2, T + 6.0) is True  # just after
    assert outages.touches(T + 4.0 + server.OUTAGE_SLACK * 2, T + 6.0) is False  # well after
    assert outages.down_within(T + 3.0, T + 10.0) == pytest.approx(1.0)
    assert outages.total() == pytest.approx(4.0)
    now[0] = T + 20.0
    outages.begin()  # not over yet: it touches whatever runs after it began
    assert outages.touches(T + 30.0, T + 31.0) is True
    assert outages.touches(T + 10.0, T + 11.0) is False
    assert len(outages) == 2 and outages.total() == pytest.approx(4.0)


def test_only_a_one_line_store_error_counts_as_refused():
    assert server.refused("queuectl: error: db: cannot connect to PostgreSQL at 127.0.0.1:1\n")
    assert not server.refused("queuectl: error: no such job\n")
    assert not server.refused("Traceback (most recent call last):\nqueuectl: error: db: x\n")
    assert not server.refused("")


def test_the_killer_has_server_faults_only_with_a_server_of_its_own(tmp_path: Path):
    quick = harness.PROFILES["quick"]
    plain = harness.ChaosRun(tmp_path, quick, 1, db=str(tmp_path / "q.db"))
    assert plain.killer.table == harness.Killer.FAULTS  # a seed repeats the same faults as before
    pg = server.Server(pgcluster.PgCluster(), "chaos")
    with_server = harness.ChaosRun(tmp_path, quick, 1, db="postgresql://u@127.0.0.1:1/c", pg=pg)
    kinds = {kind for kind, _ in with_server.killer.table}
    assert kinds == {kind for kind, _ in harness.Killer.FAULTS + server.FAULTS}
    assert with_server.supervisors.env["QUEUECTL_DB"] == "postgresql://u@127.0.0.1:1/c"


def test_each_server_fault_leaves_the_server_up_and_is_timed(tmp_path: Path):
    with server.own_store("postgres", tmp_path) as (url, pg):
        assert pg is not None
        # Else an immediate restart would lose acknowledged commits (the harness's, not ours).
        assert pg.cluster.execute("SHOW synchronous_commit") == [("on",)]
        done = threading.Event()
        done.set()  # cuts the stopped server's downtime short
        rng = harness.seeded("1")
        for number, (kind, _) in enumerate(server.FAULTS, start=1):
            store = open_store(url)  # a queuectl connection, for the terminate to cut off
            try:
                assert pg.inject(kind, rng, done) is True, kind
            finally:
                store.close()
            assert pg.cluster.running(), kind
            assert len(pg.outages) == number
        assert pg.terminated >= 1
        assert pg.outages.total() > 0
        assert pg.inject("pg_terminate_backend queuectl connections", rng, done) is False
        pg.cluster.stop("fast")
        pg.ensure_up()
        assert pg.cluster.running()
    assert not pg.cluster.running()
