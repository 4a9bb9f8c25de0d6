"""Hostile input to `enqueue`, generated: every invalid input is refused cleanly, valid is kept.

Refused means exit code 2, exactly one line on stderr starting with `queuectl: error: `, nothing
on stdout, no traceback, and nothing written: the store's file (and its directory) not even
created. The hypothesis part calls queuectl.cli.main in this process (a subprocess costs 60 ms);
a handful of cases at the end run the real console script.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from queuectl import cli, config, spec
from queuectl.models import JobFilter
from queuectl.store import open_store
from tests.helpers import QUEUECTL
from tests.unit.test_props import INVALID, valid_jobs

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def fresh_db() -> Iterator[Path]:
    """A store path in a new directory that does not exist yet (so creating it shows)."""
    with tempfile.TemporaryDirectory(prefix="h1-hostile-") as top:
        yield Path(top) / "new" / "queue.db"


def run(db: Path, args: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    """Run `queuectl --db DB ARGS` in this process; return exit code, stdout and stderr.

    A bug is not caught here: its exception fails the test, as a traceback would.
    """
    with CliRunner().isolation(input=stdin) as (out, err, _):
        try:
            cli.main(["--db", str(db), *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
        return code, out.getvalue().decode(), err.getvalue().decode()


def assert_refused(db: Path, code: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err
    assert code == 2, (code, out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("queuectl: error: "), lines[0]
    assert not db.parent.exists(), "a refused command created the store"


def stored_commands(db: Path) -> list[str]:
    with closing(open_store(db)) as store:
        return [job.command for job in store.list_jobs(JobFilter(), 10_000)]


def assert_accepted(db: Path, code: int, out: str, err: str, commands: list[str]) -> None:
    assert (code, err) == (0, ""), (code, out, err)
    assert sorted(stored_commands(db)) == sorted(commands)


# --- one JSON object ----------------------------------------------------------------------


@FAST
@given(valid_jobs())
def test_a_valid_json_job_is_stored(job: dict[str, Any]) -> None:
    with fresh_db() as db:
        code, out, err = run(db, ["enqueue", json.dumps(job)])
        assert_accepted(db, code, out, err, [job["command"]])
        assert out.strip() == job.get("id", out.strip())


@st.composite
def corrupted_jobs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid job with one field replaced by an invalid value."""
    job = dict(draw(valid_jobs()))
    field = draw(st.sampled_from(sorted(INVALID)))
    job[field] = draw(INVALID[field])
    partner = {"timeout": "timeout_sec", "timeout_sec": "timeout", "delay": "run_at"}
    job.pop(partner.get(field, ""), None)
    if field == "run_at":
        job.pop("delay", None)
    return job


def _json(value: Any) -> str:
    # NaN and Infinity are how Python writes what JSON cannot: the parser takes them too.
    return json.dumps(value, allow_nan=True)


@FAST
@given(corrupted_jobs())
def test_a_json_job_with_one_bad_field_is_refused(job: dict[str, Any]) -> None:
    with fresh_db() as db:
        assert_refused(db, *run(db, ["enqueue", _json(job)]))


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@FAST
@given(_JSON_VALUES)
def test_any_json_value_is_refused_or_stored_never_crashes(value: Any) -> None:
    with fresh_db() as db:
        code, out, err = run(db, ["enqueue", _json(value)])
        event("stored" if code == 0 else "refused")
        if code == 0:
            assert isinstance(value, dict)
            assert_accepted(db, code, out, err, [value["command"]])
        else:
            assert_refused(db, code, out, err)


@FAST
@given(st.text(max_size=60))
def test_any_text_as_a_json_argument_is_refused_or_stored(text: str) -> None:
    arg = "{" + text
    with fresh_db() as db:
        code, out, err = run(db, ["enqueue", arg])
        if code == 0:
            assert_accepted(db, code, out, err, [json.loads(arg)["command"]])
        else:
            assert_refused(db, code, out, err)


# --- flags ----------------------------------------------------------------------------------

_HUGE_INTS = st.sampled_from([2**31, 2**63, 2**64, -(2**63) - 1, 10**30])
_BAD_NUMBER_TEXT = st.sampled_from(["", "x", "1.5.", "0x10", "1e", "--", "1,5"])
_BAD_FLOATS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e400, -1.0, -1e-9]),
    st.floats(max_value=-1e-9, allow_nan=False),
    st.floats(min_value=config.MAX_SECONDS + 1, allow_infinity=False),
)


def _number_flag(
    name: str, valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]
) -> tuple[st.SearchStrategy[list[str]], st.SearchStrategy[list[str]]]:
    """For one option: its valid forms (absent or a good value) and its invalid ones."""

    def form(value: Any) -> list[str]:
        return [f"--{name}={value!r}" if isinstance(value, float) else f"--{name}={value}"]

    return st.one_of(st.just([]), valid.map(form)), invalid.map(form)


FLAGS = {
    "priority": _number_flag(
        "priority",
        st.integers(*spec.INT_RANGE),
        st.one_of(_HUGE_INTS, st.floats(), _BAD_NUMBER_TEXT),
    ),
    "max-retries": _number_flag(
        "max-retries",
        st.integers(0, 10_000),
        st.one_of(_HUGE_INTS, st.integers(max_value=-1), st.integers(10_001), _BAD_NUMBER_TEXT),
    ),
    "delay": _number_flag(
        "delay",
        st.floats(0, config.MAX_SECONDS),
        st.one_of(_BAD_FLOATS, _BAD_NUMBER_TEXT),
    ),
    "timeout": _number_flag(
        "timeout",
        st.floats(1e-6, config.MAX_SECONDS),
        st.one_of(_BAD_FLOATS, st.just(0), _BAD_NUMBER_TEXT),
    ),
    "queue": _number_flag(
        "queue",
        st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True),
        st.one_of(
            st.just(""),
            st.from_regex(r"[a-z]{0,4}[^A-Za-z0-9_.:-][a-z]{0,4}", fullmatch=True),
            st.text("ab", min_size=65, max_size=70),
        ),
    ),
    "id": _number_flag(
        "id",
        st.text(
            st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30
        ).filter(lambda s: s.isprintable() and " " not in s and not s.startswith("-")),
        st.one_of(
            st.just(""),
            st.text(max_size=5).map(lambda s: "-" + s),
            st.tuples(
                st.text("ab", max_size=3), st.sampled_from("\u202e\u200b\ufeff\u00a0\x85 \t\x1b")
            ).map("".join),
            st.just("x" * 201),
        ),
    ),
    "env": _number_flag(
        "env",
        st.from_regex(r"[A-Z_]{1,8}=[ -~]{0,20}", fullmatch=True),
        st.one_of(st.from_regex(r"[A-Z]{0,8}", fullmatch=True), st.just("=value")),
    ),
}
_COMMANDS = st.text(max_size=40).filter(lambda s: s.strip() and "\x00" not in s)


@st.composite
def flag_sets(draw: st.DrawFn) -> tuple[list[str], bool]:
    """Enqueue flags and a command; at most one flag invalid (half the time none is)."""
    bad = draw(st.one_of(st.none(), st.sampled_from(sorted(FLAGS))))
    args: list[str] = []
    for name, (good_forms, bad_forms) in FLAGS.items():
        args += draw(bad_forms if name == bad else good_forms)
    command = draw(st.one_of(_COMMANDS, _COMMANDS, st.none(), st.sampled_from(["", "  "])))
    if command is not None:
        args += ["--", command]
    return args, bad is None and command is not None and command.strip() != ""


@FAST
@given(flag_sets())
def test_enqueue_flags_are_checked(flag_set: tuple[list[str], bool]) -> None:
    args, valid = flag_set
    event("valid" if valid else "invalid")  # --hypothesis-show-statistics: both are drawn
    with fresh_db() as db:
        code, out, err = run(db, ["enqueue", *args])
        if valid:
            assert_accepted(db, code, out, err, [args[-1]])
        else:
            assert_refused(db, code, out, err)


# --- JSON lines -------------------------------------------------------------------------------


def _without_id(job: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in job.items() if key != "id"}  # no clash between lines


@FAST
@given(
    st.lists(valid_jobs().map(_without_id), min_size=1, max_size=6),
    st.one_of(st.none(), corrupted_jobs().map(_json), st.sampled_from(["{", "[1]", "42", "{}"])),
    st.data(),
)
def test_a_json_lines_file_is_all_or_nothing(
    jobs: list[dict[str, Any]], bad: str | None, data: st.DataObject
) -> None:
    lines = [json.dumps(job) for job in jobs]
    where = data.draw(st.integers(0, len(lines)), label="bad line index")
    if bad is not None:
        lines.insert(where, bad)
    with fresh_db() as db:
        code, out, err = run(db, ["enqueue", "--file", "-"], stdin="\n".join(lines) + "\n")
        if bad is None:
            assert_accepted(db, code, out, err, [job["command"] for job in jobs])
            assert len(out.splitlines()) == len(jobs)  # the ids, one a line
        else:
            assert_refused(db, code, out, err)
            assert err.startswith(f"queuectl: error: line {where + 1}: "), err


# --- the real console script ------------------------------------------------------------------

REAL_CASES = [
    pytest.param(["enqueue", "[1,2]"], None, id="lone-json-list"),
    pytest.param(["enqueue", "--priority", str(2**63), "--", "true"], None, id="priority-huge"),
    pytest.param(["enqueue", "--delay", "nan", "--", "true"], None, id="delay-nan"),
    pytest.param(["enqueue", "--timeout", "-inf", "--", "true"], None, id="timeout-neg-inf"),
    pytest.param(["enqueue", "--id", "job\u202e1", "--", "true"], None, id="id-bidi"),
    pytest.param(["enqueue", "--file", "-"], '{"command": "true"}\n{"command": 5}\n', id="file"),
    pytest.param(
        ["enqueue", "--file", "-"], json.dumps({"command": "x" * 1_000_000}) + "\n", id="1-MB"
    ),
    pytest.param(["list", "--limit", str(2**63)], None, id="list-limit-huge"),
    pytest.param(["worker", "stop", "--timeout", "nan"], None, id="stop-timeout-nan"),
]


@pytest.mark.parametrize(("args", "stdin"), REAL_CASES)
def test_the_console_script_refuses_cleanly(
    tmp_path: Path, args: list[str], stdin: str | None
) -> None:
    db = tmp_path / "new" / "queue.db"
    result = subprocess.run(
        [QUEUECTL, "--db", str(db), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_refused(db, result.returncode, result.stdout, result.stderr)
