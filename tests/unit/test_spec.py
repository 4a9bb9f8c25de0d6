"""Job specs: every field valid and invalid, JSON lines, and the field each error names."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuectl import errors, models, spec


def parse(**fields: Any) -> models.JobSpec:
    return spec.from_mapping({"command": "echo hi", **fields})


def field_error(data: Any) -> errors.FieldError:
    """The FieldError a decoded object raises (no other exception type is acceptable)."""
    with pytest.raises(errors.FieldError) as info:
        spec.from_mapping(data)
    return info.value


# --- valid specs ---------------------------------------------------------------


def test_minimal_spec_has_the_defaults():
    assert spec.from_json('{"command": "sleep 2"}') == models.JobSpec(command="sleep 2")


def test_every_field():
    got = spec.from_json(
        json.dumps(
            {
                "id": "job-1",
                "command": "echo $X",
                "priority": -5,
                "run_at": "2026-01-31T09:00:00+02:00",
                "max_retries": 0,
                "timeout": 2.5,
                "queue": "mail.out:v2_a-b",
                "cwd": "sub/dir",
                "env": {"X": "1", "EMPTY": ""},
            }
        )
    )
    assert got == models.JobSpec(
        id="job-1",
        command="echo $X",
        priority=-5,
        run_at=datetime(2026, 1, 31, 9, tzinfo=timezone(timedelta(hours=2))),
        max_retries=0,
        timeout=2.5,
        queue="mail.out:v2_a-b",
        cwd="sub/dir",
        env={"X": "1", "EMPTY": ""},
    )


def test_null_fields_mean_the_default():
    got = parse(
        id=None, priority=None, run_at=None, delay=None, max_retries=None, timeout=None, env=None
    )
    assert got == models.JobSpec(command="echo hi")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31T09:00:00Z", datetime(2026, 1, 31, 9, tzinfo=UTC)),
        ("2026-01-31T09:00:00+00:00", datetime(2026, 1, 31, 9, tzinfo=UTC)),
        ("2026-01-31 09:00:00.250-01:30", datetime(2026, 1, 31, 10, 30, 0, 250000, tzinfo=UTC)),
    ],
)
def test_run_at_formats(text, expected):
    got = parse(run_at=text).run_at
    assert got == expected
    assert got is not None
    assert got.utcoffset() is not None


@pytest.mark.parametrize("delay", [0, 0.5, 30, 86400])
def test_delay(delay):
    got = parse(delay=delay)
    assert got.delay == delay
    assert isinstance(got.delay, float)


@pytest.mark.parametrize("timeout", [0.01, 1, 3600])
def test_timeout_is_a_float(timeout):
    got = parse(timeout=timeout)
    assert got.timeout == timeout
    assert isinstance(got.timeout, float)


def test_timeout_sec_is_an_alias_of_timeout():
    assert parse(timeout_sec=7).timeout == 7.0
    assert parse(timeout_sec=7, timeout=None).timeout == 7.0
    assert parse(timeout_sec=None, timeout=3).timeout == 3.0


@pytest.mark.parametrize("priority", [-(2**31), -1, 0, 10, 2**31 - 1])
def test_priority_range(priority):
    assert parse(priority=priority).priority == priority


@pytest.mark.parametrize("max_retries", [0, 1, 10_000])
def test_max_retries_range(max_retries):
    assert parse(max_retries=max_retries).max_retries == max_retries


@pytest.mark.parametrize("job_id", ["a", "job-1", "x" * spec.MAX_ID_LENGTH, "über/ß", "a-b_c.d:e"])
def test_valid_ids(job_id):
    assert parse(id=job_id).id == job_id


@pytest.mark.parametrize("command", ["true", "  echo padded  ", "echo 'a\nb'", "ls | wc -l"])
def test_commands_are_kept_verbatim(command):
    assert spec.from_mapping({"command": command}).command == command


# --- invalid specs: each names its field ----------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        # command
        ({}, "command"),
        ({"command": None}, "command"),
        ({"command": ""}, "command"),
        ({"command": "   \t\n"}, "command"),
        ({"command": 5}, "command"),
        ({"command": ["ls"]}, "command"),
        ({"command": "echo \x00"}, "command"),
        # unknown fields
        ({"command": "x", "retries": 3}, "retries"),
        ({"command": "x", "Command": "y"}, "Command"),
        # id
        ({"command": "x", "id": ""}, "id"),
        ({"command": "x", "id": "a b"}, "id"),
        ({"command": "x", "id": "tab\there"}, "id"),
        ({"command": "x", "id": "-flag"}, "id"),
        ({"command": "x", "id": "x" * (spec.MAX_ID_LENGTH + 1)}, "id"),
        ({"command": "x", "id": 12}, "id"),
        # priority
        ({"command": "x", "priority": "1"}, "priority"),
        ({"command": "x", "priority": 1.5}, "priority"),
        ({"command": "x", "priority": 1.0}, "priority"),
        ({"command": "x", "priority": True}, "priority"),
        ({"command": "x", "priority": 2**31}, "priority"),
        ({"command": "x", "priority": -(2**31) - 1}, "priority"),
        # max_retries
        ({"command": "x", "max_retries": -1}, "max_retries"),
        ({"command": "x", "max_retries": 10_001}, "max_retries"),
        ({"command": "x", "max_retries": False}, "max_retries"),
        ({"command": "x", "max_retries": "3"}, "max_retries"),
        ({"command": "x", "max_retries": 2.0}, "max_retries"),
        # timeout
        ({"command": "x", "timeout": 0}, "timeout"),
        ({"command": "x", "timeout": -3}, "timeout"),
        ({"command": "x", "timeout": "5"}, "timeout"),
        ({"command": "x", "timeout": True}, "timeout"),
        ({"command": "x", "timeout": float("nan")}, "timeout"),
        ({"command": "x", "timeout": float("inf")}, "timeout"),
        # timeout_sec
        ({"command": "x", "timeout": 1, "timeout_sec": 1}, "timeout_sec"),
        ({"command": "x", "timeout_sec": 0}, "timeout_sec"),
        ({"command": "x", "timeout_sec": -1}, "timeout_sec"),
        ({"command": "x", "timeout_sec": "10"}, "timeout_sec"),
        # delay
        ({"command": "x", "delay": -1}, "delay"),
        ({"command": "x", "delay": "5 minutes"}, "delay"),
        ({"command": "x", "delay": True}, "delay"),
        ({"command": "x", "delay": float("inf")}, "delay"),
        ({"command": "x", "delay": 5, "run_at": "2026-01-31T09:00:00Z"}, "delay"),
        # run_at
        ({"command": "x", "run_at": "2026-01-31T09:00:00"}, "run_at"),
        ({"command": "x", "run_at": "2026-01-31"}, "run_at"),
        ({"command": "x", "run_at": "tomorrow"}, "run_at"),
        ({"command": "x", "run_at": "31/01/2026 09:00 +00:00"}, "run_at"),
        ({"command": "x", "run_at": "2026-02-30T09:00:00Z"}, "run_at"),
        ({"command": "x", "run_at": 1769850000}, "run_at"),
        ({"command": "x", "run_at": ""}, "run_at"),
        # queue
        ({"command": "x", "queue": ""}, "queue"),
        ({"command": "x", "queue": "a b"}, "queue"),
        ({"command": "x", "queue": "a/b"}, "queue"),
        ({"command": "x", "queue": "q" * 65}, "queue"),
        ({"command": "x", "queue": 1}, "queue"),
        # cwd
        ({"command": "x", "cwd": ""}, "cwd"),
        ({"command": "x", "cwd": 3}, "cwd"),
        ({"command": "x", "cwd": "a\x00b"}, "cwd"),
        # env
        ({"command": "x", "env": ["A=1"]}, "env"),
        ({"command": "x", "env": "A=1"}, "env"),
        ({"command": "x", "env": {"": "1"}}, "env"),
        ({"command": "x", "env": {"A=B": "1"}}, "env"),
        ({"command": "x", "env": {"A": 1}}, "env"),
        ({"command": "x", "env": {"A": None}}, "env"),
        ({"command": "x", "env": {"A": "a\x00b"}}, "env"),
    ],
)
def test_invalid_field_is_named(fields, field):
    err = field_error(fields)
    assert err.field == field
    assert err.line is None
    assert str(err).startswith(f"{field}: ")
    assert err.exit_code == 2


@pytest.mark.parametrize("field", ["timeout", "delay"])
def test_huge_numbers_are_a_field_error(field):
    # 10**400 is a valid JSON number that no float can hold.
    assert field_error({"command": "x", field: 10**400}).field == field
    with pytest.raises(errors.FieldError) as info:
        spec.from_json('{"command": "x", "' + field + '": 1' + "0" * 400 + "}")
    assert info.value.field == field


def test_a_number_too_long_to_decode_is_a_field_error():
    with pytest.raises(errors.FieldError) as info:
        spec.from_json('{"command": "x", "priority": ' + "9" * 5000 + "}")
    assert info.value.field in ("priority", "job")


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+01:00",  # year 0 in UTC
        "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
    ],
)
def test_run_at_outside_the_representable_range_is_refused(text):
    # Such a time cannot be converted to UTC, so the store could not read the job back.
    assert field_error({"command": "x", "run_at": text}).field == "run_at"


@pytest.mark.parametrize("data", [["command"], "echo", 5, None])
def test_not_an_object(data):
    assert field_error(data).field == "job"


@pytest.mark.parametrize("text", ["", "{", '{"command": "x",}', "{'command': 'x'}", "nope"])
def test_invalid_json(text):
    with pytest.raises(errors.FieldError) as info:
        spec.from_json(text)
    assert info.value.field == "job"
    assert "invalid JSON" in info.value.problem


def test_messages_say_how_to_fix():
    assert "like" in field_error({}).problem
    assert '"-3"' not in field_error({"command": "x", "timeout": -3}).problem
    assert "-3" in field_error({"command": "x", "timeout": -3}).problem
    unknown = field_error({"command": "x", "colour": "red"})
    assert "known fields" in unknown.problem
    assert "timeout_sec" in unknown.problem


# --- what execve can take, and characters that hide ---------------------------------

LINUX = sys.platform.startswith("linux")
ONE_ARG = 131071  # Linux's MAX_ARG_STRLEN on 4 KiB pages (32 pages), less the terminating NUL
on_4k_linux = pytest.mark.skipif(
    not LINUX or os.sysconf("SC_PAGE_SIZE") != 4096, reason="Linux's one-argument limit"
)


@on_4k_linux
def test_one_argument_limit_is_linuxs_max_arg_strlen():
    assert spec.MAX_ARG_BYTES == ONE_ARG


@on_4k_linux
@pytest.mark.parametrize(
    ("command", "ok"),
    [
        pytest.param("x" * ONE_ARG, True, id="at-the-limit"),
        pytest.param("x" * (ONE_ARG + 1), False, id="one-byte-over"),
        pytest.param("é" * 65536, False, id="multibyte-over"),  # 65,536 characters, 131,072 bytes
        pytest.param("é" * 65535 + "x", True, id="multibyte-at-the-limit"),
        pytest.param("x" * 1_000_000, False, id="one-megabyte"),
    ],
)
def test_a_command_longer_than_one_exec_argument_is_refused(command, ok):
    if ok:
        assert spec.from_mapping({"command": command}).command == command
        return
    err = field_error({"command": command})
    assert err.field == "command"
    assert str(len(command.encode())) in err.problem and str(ONE_ARG) in err.problem
    assert len(str(err)) < 300  # the message does not repeat the command


@on_4k_linux
@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [
        pytest.param("K", "v" * (ONE_ARG - 2), True, id="entry-at-the-limit"),
        pytest.param("K", "v" * (ONE_ARG - 1), False, id="entry-one-byte-over"),
        pytest.param("K" * ONE_ARG, "", False, id="long-name"),
    ],
)
def test_an_env_entry_longer_than_one_exec_string_is_refused(key, value, ok):
    data = {"command": "true", "env": {key: value}}
    if ok:
        assert spec.from_mapping(data).env == {key: value}
        return
    err = field_error(data)
    assert err.field == "env"
    assert str(ONE_ARG) in err.problem and len(str(err)) < 300


def test_a_job_whose_command_and_env_overflow_exec_is_refused():
    entry = spec.MAX_ARG_BYTES // 2
    count = spec.MAX_EXEC_BYTES // entry + 1
    env = {f"V{n}": "x" * entry for n in range(count)}
    err = field_error({"command": "true", "env": env})
    assert err.field == "env"
    assert str(spec.MAX_EXEC_BYTES) in err.problem and len(str(err)) < 300


def test_a_job_just_inside_the_exec_budget_is_accepted():
    entry = spec.MAX_ARG_BYTES // 2
    count = spec.MAX_EXEC_BYTES // (entry + 64) - 1
    env = {f"V{n}": "x" * entry for n in range(count)}
    assert len(spec.from_mapping({"command": "true", "env": env}).env or {}) == count


def test_the_exec_budget_leaves_half_of_arg_max_to_the_workers_environment():
    arg_max = os.sysconf("SC_ARG_MAX")
    assert arg_max // 2 == spec.MAX_EXEC_BYTES


HIDDEN = [
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\u200b",  # zero width space
    "\ufeff",  # byte order mark
    "\u00a0",  # no-break space
    "\u3000",  # ideographic space
    "\u0085",  # next line, a C1 control
    "\u009b",  # control sequence introducer, a C1 control
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    "\u00ad",  # soft hyphen
    "\ue000",  # private use
    "\U000e0001",  # language tag
]


@pytest.mark.parametrize("char", HIDDEN, ids=[ascii(c) for c in HIDDEN])
@pytest.mark.parametrize("field", ["id", "queue"])
def test_invisible_and_bidi_characters_are_refused_and_shown_escaped(field, char):
    err = field_error({"command": "x", field: f"job{char}1"})
    assert err.field == field
    assert char not in str(err)
    assert json.dumps(char)[1:-1] in str(err)  # shown as a \u escape
    assert str(err).isascii()


@pytest.mark.parametrize("job_id", ["日本語", "café", "Ω-1", "a/b", "x!@#$%^&*()"])
def test_visible_non_ascii_ids_are_accepted(job_id):
    assert parse(id=job_id).id == job_id


def test_error_messages_escape_what_they_repeat():
    for data in [
        {"command": "x", "env": {"A\x1b[2J": 5}},
        {"command": "x", "priority": "\x1b]0;title\x07"},
        {"command": ["\u202e"]},
        {"command": "x", "run_at": "\x9b2J"},
        {"command": "x", "\x1b[2J\u202e": 1},
        {"command": "x", "queue": "\u202eq"},
    ]:
        message = str(field_error(data))
        assert message.isprintable() and "\u202e" not in message, message


# --- parsers used by the CLI flags ------------------------------------------------


def test_parse_queue_and_id_directly():
    assert spec.parse_queue("default") == "default"
    assert spec.parse_id("abc") == "abc"
    with pytest.raises(errors.FieldError) as info:
        spec.parse_queue("bad queue")
    assert info.value.field == "queue"


# --- JSON lines ---------------------------------------------------------------------


def test_from_lines_skips_blank_lines():
    lines = ['{"command": "a"}\n', "\n", "   \n", '{"command": "b", "priority": 2}\n']
    assert spec.from_lines(lines) == [
        models.JobSpec(command="a"),
        models.JobSpec(command="b", priority=2),
    ]


def test_from_lines_names_the_line():
    lines = ['{"command": "a"}', "", '{"command": "b", "timeout": -1}', '{"command": "c"}']
    with pytest.raises(errors.FieldError) as info:
        spec.from_lines(lines)
    assert info.value.line == 3
    assert info.value.field == "timeout"
    assert str(info.value).startswith("line 3: timeout: ")


def test_from_lines_names_the_line_of_invalid_json():
    with pytest.raises(errors.FieldError) as info:
        spec.from_lines(['{"command": "a"}', "{oops"])
    assert info.value.line == 2
    assert info.value.field == "job"


@pytest.mark.parametrize("lines", [[], [""], ["\n", "  \n", "\t"]])
def test_from_lines_without_jobs_is_a_usage_error(lines):
    with pytest.raises(errors.UsageError) as info:
        spec.from_lines(lines)
    assert not isinstance(info.value, errors.FieldError)
    assert "no jobs" in str(info.value)


def test_from_lines_reads_a_file_object(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"command": "a"}\n\n{"command": "b"}\n', encoding="utf-8")
    with path.open(encoding="utf-8") as f:
        assert [s.command for s in spec.from_lines(f)] == ["a", "b"]


# --- the whole-file fast path must agree with parsing line by line -------------------------------
FRAGMENTS = [
    '{"command": "a"}',
    '{"command": "b", "queue": "q", "priority": 3}',
    '{"command": "c", "env": {"K": "v"}}',
    "",
    "   ",
    '{"command": "a"}, {"command": "b"}',  # two objects on one line
    '{"command": "a"',  # an object left open ...
    '"queue": "q"}',  # ... closed on the next line
    '{"command": "a", "id": "}',  # a string left open ...
    '{", "queue": "b"}',  # ... that the next line would close
    '{"c": [{}',  # an array left open ...
    '{}], "command": "b"}',  # ... closed on the next line
    "]",
    "[",
    '"just a string"',
    "1, 2",
    '{"command": "a"} trailing',
    '\ufeff{"command": "bom"}',
    '{"command": "x", "nope": 1}',
    '{"command": ""}',
]


TWO_ON_ONE_LINE = '{"command": "c"}, {"command": "d"}'


def _outcome(parse: Any, lines: list[str]) -> Any:
    try:
        return parse(lines)
    except errors.UsageError as exc:  # FieldError too
        return (type(exc), str(exc))


@given(st.lists(st.sampled_from(FRAGMENTS), max_size=8))
def test_whole_file_parsing_agrees_with_parsing_each_line(lines: list[str]):
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    expected = (
        _outcome(lambda _: spec._parse_each(numbered), lines)
        if numbered
        else _outcome(spec.numbered_lines, [])
    )
    assert _outcome(spec.numbered_lines, lines) == expected


@pytest.mark.parametrize(
    ("lines", "bad_line"),
    [
        (
            [
                '{"command": "a", "id": "}',
                '{", "queue": "b"}',
                '{"command": "c"}, {"command": "d"}',
            ],
            1,
        ),
        (['{"command": "a"', '"queue": "q"}', '{"command": "c"}, {"command": "d"}'], 1),
        (
            [
                '{"command": "ok"}',
                '{"c": [{}',
                '{}], "command": "b"}',
                '{"command": "c"}, {"command": "d"}',
            ],
            2,
        ),
    ],
)
def test_lines_that_only_join_into_valid_json_are_refused(lines: list[str], bad_line: int):
    with pytest.raises(errors.FieldError) as info:
        spec.numbered_lines(lines)
    assert info.value.line == bad_line


def test_deeply_nested_json_is_a_field_error_on_its_line():
    deep = '{"command": "a", "env": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(errors.FieldError) as info:
        spec.numbered_lines(['{"command": "ok"}', deep])
    assert (info.value.line, info.value.field) == (2, "job")
    assert "nested too deeply" in str(info.value)
