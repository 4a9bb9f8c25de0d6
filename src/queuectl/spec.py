"""Turn user input (a JSON object, flags, JSON lines) into checked JobSpecs; check arguments.

The arguments are the other values commands take: list limits, attempt numbers, job ids to
look up, stop timeouts. Commands check them before they open the store, so a refused command
creates nothing. Every mistake raises FieldError naming the field (and the line, for JSON
lines) and the fix. No I/O beyond reading the stream it is given.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from queuectl import errors, models
from queuectl.config import MAX_SECONDS, duration_seconds

FIELDS = (
    "id",
    "command",
    "priority",
    "run_at",
    "delay",
    "max_retries",
    "timeout",
    "timeout_sec",
    "queue",
    "cwd",
    "env",
    "tags",
)
_FIELD_SET = frozenset(FIELDS)
MAX_ID_LENGTH = 200
INT_RANGE = (-(2**31), 2**31 - 1)
_QUEUE_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_TAG_RE = _QUEUE_RE
MAX_TAGS = 32
_ENV_NAME_RE = re.compile(r"[^=\x00]+")
MAX_LIST_LIMIT = 1_000_000
"""The most jobs one `list` prints; SQLite's LIMIT overflows past 2**63 - 1."""
MAX_STOP_WAIT = 86_400.0
"""The longest `worker stop` waits for workers to exit, in seconds (a day)."""
_SHOWN = 60
"""Characters of a refused value an error message repeats."""


def _arg_max() -> int:
    try:
        value = os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError):
        value = -1
    return value if value > 0 else 1024 * 1024  # indeterminate: macOS's figure, a modest one


MAX_EXEC_BYTES = _arg_max() // 2
"""The most a job's command and env may take of execve's ARG_MAX (strings, NULs and pointers).

Half: the other half is left to the worker's own environment, which the job's env is added to.
"""
MAX_ARG_BYTES = (
    32 * os.sysconf("SC_PAGE_SIZE") - 1 if sys.platform.startswith("linux") else MAX_EXEC_BYTES
)
"""The longest one argument or env entry may be, in UTF-8 bytes.

Linux refuses a longer string with E2BIG (MAX_ARG_STRLEN: 32 pages, the terminating NUL
included); other systems have no limit of their own beyond ARG_MAX.
"""
_POINTER = 8
_SHELL_BYTES = len(b"/bin/sh\0-c\0") + 4 * _POINTER  # argv's own words, its pointers and NULL


def _fail(field: str, problem: str) -> errors.FieldError:
    return errors.FieldError(field, problem)


def _show(value: Any) -> str:
    """A refused value as JSON: control, invisible and non-ASCII characters escaped, cut short."""
    try:
        text = json.dumps(value)
    except ValueError:  # an int past Python's 4300-digit str() limit
        return "a number too long to show"
    except TypeError:
        text = json.dumps(repr(value))
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, f"must be a whole number (got {_show(value)})")
    if not low <= value <= high:
        raise _fail(name, f"must be a whole number from {low} to {high} (got {_show(value)})")
    return value


def _seconds(name: str, value: Any, *, allow_zero: bool, high: float = MAX_SECONDS) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise _fail(name, f"must be a number of seconds (got {_show(value)})")
    if value < 0 or (value == 0 and not allow_zero) or value > high:
        relation = ">= 0" if allow_zero else "> 0"
        raise _fail(
            name, f"must be a number of seconds {relation} and <= {high:g} (got {_show(value)})"
        )
    return float(value)


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(name, f"must be a string (got {_show(value)})")
    _utf8(name, value)
    return value


def _utf8(name: str, text: str) -> None:
    """Refuse text that cannot be stored or passed to a process (lone surrogates, bad bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(name, f"must be valid UTF-8 text (got {ascii(text)[:_SHOWN]})") from None


def parse_id(value: Any) -> str:
    """Check a job id: 1 to 200 printable characters without spaces, not starting with '-'.

    Printable as str.isprintable() says: no control, format (bidi overrides, zero-width), private
    use, unassigned or separator characters, so an id looks like what it is; and of the spaces
    it allows, ASCII space is refused too.
    """
    text = _string("id", value)
    if (
        not 0 < len(text) <= MAX_ID_LENGTH
        or not text.isprintable()
        or " " in text
        or text[0] == "-"
    ):
        raise _fail(
            "id",
            f"must be 1-{MAX_ID_LENGTH} printable characters without spaces or invisible ones, "
            f"not starting with '-' (got {_show(text)})",
        )
    return text


def parse_command(value: Any) -> str:
    """Check a command: a non-empty string for /bin/sh -c."""
    text = _string("command", value)
    if not text.strip():
        raise _fail("command", 'must be a non-empty shell command, like "sleep 2"')
    if "\x00" in text:
        raise _fail("command", "must not contain a NUL character")
    # A character takes at most 4 bytes: only a long command needs encoding to be measured.
    if len(text) * 4 > MAX_ARG_BYTES and (size := len(text.encode())) > MAX_ARG_BYTES:
        raise _fail(
            "command",
            f"is {size} bytes, but one argument to /bin/sh -c holds at most {MAX_ARG_BYTES} "
            "(E2BIG otherwise): put the script in a file and run that",
        )
    return text


def parse_run_at(value: Any) -> datetime:
    """Check an ISO-8601 timestamp with a timezone."""
    text = _string("run_at", value)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(
            "run_at", f"must be an ISO-8601 time like 2026-01-31T09:00:00Z (got {_show(text)})"
        ) from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise _fail("run_at", f"must include a timezone, like Z or +02:00 (got {_show(text)})")
    try:
        when.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _fail(
            "run_at", f"must be between the years 1 and 9999 in UTC (got {_show(text)})"
        ) from None
    return when


def parse_queue(value: Any) -> str:
    """Check a queue name: 1 to 64 of letters, digits, '_', '.', ':' and '-'."""
    text = _string("queue", value)
    if not _QUEUE_RE.fullmatch(text):
        raise _fail(
            "queue", f"must be 1-64 letters, digits, '_', '.', ':' or '-' (got {_show(text)})"
        )
    return text


def parse_tag(value: Any) -> str:
    """Check a tag: 1 to 64 of letters, digits, '_', '.', ':' and '-' (as a queue name)."""
    text = _string("tags", value)
    if not _TAG_RE.fullmatch(text):
        raise _fail(
            "tags", f"each must be 1-64 letters, digits, '_', '.', ':' or '-' (got {_show(text)})"
        )
    return text


def parse_tags(value: Any) -> tuple[str, ...]:
    """Check a job's tags: a list of up to 32 tags (duplicates dropped, order kept)."""
    if not isinstance(value, list | tuple):
        raise _fail("tags", f'must be a list of tags like ["nightly", "db"] (got {_show(value)})')
    tags = tuple(dict.fromkeys(parse_tag(item) for item in value))
    if len(tags) > MAX_TAGS:
        raise _fail("tags", f"must be at most {MAX_TAGS} tags (got {len(tags)})")
    return tags


def parse_env(value: Any) -> dict[str, str]:
    """Check an environment mapping of names to string values."""
    if not isinstance(value, Mapping):
        raise _fail(
            "env",
            f'must be an object of strings, like {{"KEY": "value"}} (got {_show(value)})',
        )
    env: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(key, str):
            _utf8("env", key)
        if isinstance(item, str):
            _utf8("env", item)
        if not isinstance(key, str) or not _ENV_NAME_RE.fullmatch(key):
            raise _fail(
                "env",
                f"variable names must be non-empty and contain no '=' (got {_show(key)})",
            )
        if not isinstance(item, str) or "\x00" in item:
            raise _fail("env", f"value of {_show(key)} must be a string (got {_show(item)})")
        if (len(key) + len(item)) * 4 >= MAX_ARG_BYTES:  # else short enough without encoding
            _check_env_entry(key, item)
        env[key] = item
    return env


def _check_env_entry(key: str, item: str) -> None:
    """Refuse a KEY=VALUE string longer than execve takes in one environment entry."""
    size = len(key.encode()) + 1 + len(item.encode())
    if size > MAX_ARG_BYTES:
        raise _fail(
            "env",
            f"{_show(key)}=VALUE is {size} bytes, but one environment entry holds at most "
            f"{MAX_ARG_BYTES} (E2BIG otherwise): pass large data in a file",
        )


def _check_exec_size(command: str, env: Mapping[str, str] | None) -> None:
    """Refuse a job whose command and env together would not fit in execve's budget."""
    entries = env or {}
    # The command's NUL, envp's NULL, and per entry its "=", NUL and pointer.
    fixed = _SHELL_BYTES + 1 + _POINTER + len(entries) * (2 + _POINTER)
    chars = len(command) + sum(len(key) + len(item) for key, item in entries.items())
    if chars * 4 + fixed <= MAX_EXEC_BYTES:
        return  # the usual case, measured without encoding anything
    size = fixed + len(command.encode())
    size += sum(len(key.encode()) + len(item.encode()) for key, item in entries.items())
    if size > MAX_EXEC_BYTES:
        raise _fail(
            "env" if entries else "command",
            f"the command and env take {size} bytes, but a job may pass at most "
            f"{MAX_EXEC_BYTES} to execve (half of ARG_MAX): pass large data in a file",
        )


def parse_cwd(value: Any) -> str:
    """Check a working directory path."""
    text = _string("cwd", value)
    if not text or "\x00" in text:
        raise _fail("cwd", "must be a non-empty directory path")
    return text


_OPTIONAL: dict[str, Callable[[Any], Any]] = {
    "id": parse_id,
    "priority": lambda v: _integer("priority", v, *INT_RANGE),
    "run_at": parse_run_at,
    "delay": lambda v: parse_duration("delay", v),
    "max_retries": lambda v: _integer("max_retries", v, 0, 10_000),
    "timeout": lambda v: _seconds("timeout", v, allow_zero=False),
    "queue": parse_queue,
    "cwd": parse_cwd,
    "env": parse_env,
    "tags": lambda v: parse_tags(v),
}


def from_mapping(data: Any) -> models.JobSpec:
    """Check a decoded JSON object and return its JobSpec. A null field means "the default"."""
    if not isinstance(data, Mapping):
        raise _fail(
            "job", f'must be a JSON object like {{"command": "sleep 2"}} (got {_show(data)})'
        )
    if not _FIELD_SET.issuperset(data):
        unknown = next(key for key in data if key not in _FIELD_SET)
        name = unknown if isinstance(unknown, str) and unknown.isprintable() else _show(unknown)
        raise _fail(name, f"unknown field (known fields: {', '.join(FIELDS)})")
    fields = dict(data)
    alias = fields.pop("timeout_sec", None)
    if alias is not None:
        if fields.get("timeout") is not None:
            raise _fail("timeout_sec", "give timeout or timeout_sec, not both")
        fields["timeout"] = _seconds("timeout_sec", alias, allow_zero=False)
    if "command" not in fields or fields["command"] is None:
        raise _fail("command", 'is required, like {"command": "sleep 2"}')
    if fields.get("run_at") is not None and fields.get("delay") is not None:
        raise _fail("delay", "give run_at or delay, not both")
    values = {
        key: _OPTIONAL[key](value)
        for key, value in fields.items()
        if key != "command" and value is not None
    }
    command = parse_command(fields["command"])
    if "env" in values or len(command) * 4 > MAX_EXEC_BYTES // 2:  # else it fits, unmeasured
        _check_exec_size(command, values.get("env"))
    return models.JobSpec(command=command, **values)


def from_json(text: str) -> models.JobSpec:
    """Parse one JSON object into a JobSpec."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail("job", f"invalid JSON at column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise _fail("job", f"invalid JSON: {exc}") from None
    except RecursionError:
        raise _fail("job", "invalid JSON: nested too deeply") from None
    return from_mapping(data)


def from_lines(lines: Iterable[str]) -> list[models.JobSpec]:
    """Parse JSON lines (one object a line, blank lines skipped); errors name the line number."""
    return numbered_lines(lines)[0]


def numbered_lines(lines: Iterable[str]) -> tuple[list[models.JobSpec], list[int]]:
    """Like from_lines, and also return the line number each spec came from."""
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise errors.UsageError("file: holds no jobs (write one JSON object a line)")
    # One json.loads for the whole file is five times faster than one a line, and gives the same
    # objects when each line is one: joined by ",\n", no string can run from one line into the
    # next (JSON forbids raw newlines in strings); with every line starting with "{", none can
    # continue an object left open (that needs a key next); continuing an open list makes a
    # field hold a list, which no field accepts. At any doubt (a decode error, a count that
    # differs, a field error) the lines are parsed one by one, which names the first bad line.
    decoded = None
    if all(line.lstrip().startswith("{") for _, line in numbered):
        with contextlib.suppress(ValueError, RecursionError):
            decoded = json.loads("[" + ",\n".join(line for _, line in numbered) + "]")
    if isinstance(decoded, list) and len(decoded) == len(numbered):
        try:
            return [from_mapping(data) for data in decoded], [number for number, _ in numbered]
        except errors.FieldError:
            pass
    return _parse_each(numbered)


def _parse_each(numbered: Iterable[tuple[int, str]]) -> tuple[list[models.JobSpec], list[int]]:
    specs: list[models.JobSpec] = []
    numbers: list[int] = []
    for number, line in numbered:
        try:
            specs.append(from_json(line))
        except errors.FieldError as exc:
            raise errors.FieldError(exc.field, exc.problem, line=number) from None
        numbers.append(number)
    return specs, numbers


def parse_limit(value: Any) -> int:
    """Check how many jobs a list may print: 1 to MAX_LIST_LIMIT."""
    return _integer("limit", value, 1, MAX_LIST_LIMIT)


def parse_attempt(value: Any) -> int:
    """Check an attempt number to look up (attempts are numbered from 1)."""
    return _integer("attempt", value, 1, INT_RANGE[1])


def parse_wait(value: Any) -> float:
    """Check how long `worker stop` waits: finite seconds from 0 (do not wait) to a day."""
    return _seconds("timeout", value, allow_zero=True, high=MAX_STOP_WAIT)


def parse_job_ref(value: Any) -> str:
    """Check a job id given to look a job up (show, logs, dlq retry).

    Looser than parse_id: a job stored under older rules must stay reachable. It only refuses
    what no stored id can be: empty, too long, or not UTF-8 (which SQLite cannot even compare).
    """
    text = _string("job", value)
    if not text or len(text) > MAX_ID_LENGTH:
        raise _fail(
            "job", f"must be a job id of 1-{MAX_ID_LENGTH} characters (see `queuectl list`)"
        )
    return text


def parse_duration(name: str, value: Any, *, allow_zero: bool = True) -> float:
    """Check a duration: seconds (`90`, `1.5`) or units (`10m`, `1h30m`, `7d`, `2d12h`)."""
    if isinstance(value, str):
        seconds = duration_seconds(value) if len(value) <= _SHOWN else None
        if seconds is None:
            raise _fail(
                name,
                f"must be seconds or a duration like 90, 10m, 1h30m or 7d (got {_show(value)})",
            )
        return _seconds(name, seconds, allow_zero=allow_zero)
    return _seconds(name, value, allow_zero=allow_zero)


def parse_signal(value: Any) -> int:
    """Check a signal: a name (TERM, SIGTERM, kill) or a number of one this system has."""
    import signal  # not on the start-up path of other commands

    text = _string("signal", value).strip()
    if text.isdigit():
        number = int(text)
        valid = {int(sig) for sig in signal.valid_signals()}
        if number in valid and number > 0:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        found = getattr(signal.Signals, name, None) if name.isidentifier() else None
        if isinstance(found, signal.Signals):
            return int(found)
    raise _fail("signal", f"must be a signal name like TERM, INT, KILL or HUP (got {_show(value)})")


def parse_state(value: Any, allowed: Iterable[models.JobState]) -> models.JobState:
    """Check a job state given to select jobs, among those the command takes."""
    choices = list(allowed)
    text = _string("state", value).strip().lower()
    for state in choices:
        if text == state.value:
            return state
    names = ", ".join(state.value for state in choices)
    raise _fail("state", f"must be one of {names} (got {_show(value)})")
