"""Configuration keys: each one's default, meaning and parser, and the Config value they make.

Values are stored as text in the store; this module turns text into checked values. No I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

from queuectl import errors
from queuectl.record import field_names, record

MAX_RETRIES = 3
"""Retries after the first attempt; a job runs at most max_retries + 1 times."""
BACKOFF_BASE = 2.0
"""A failed attempt is retried after backoff_base ** attempts seconds."""
MAX_BACKOFF = 3600.0
"""The longest wait between attempts, in seconds."""
BACKOFF_JITTER = 0.0
"""Spread of the delay: it is multiplied by a random factor in [1 - jitter, 1 + jitter]."""
JOB_TIMEOUT = 0.0
"""Default timeout of an attempt in seconds; 0 means none."""
POLL_INTERVAL = 1.0
"""Longest an idle worker sleeps before looking for due jobs again, in seconds."""
OUTPUT_LIMIT = 1024 * 1024
"""Bytes of stdout and of stderr kept per attempt (the tail)."""
LEASE = 30.0
"""Seconds a claim stays valid without a heartbeat; a dead worker's job is recovered after it."""

KEEP_FINISHED = 7 * 86400.0
"""Seconds completed and cancelled jobs are kept before workers delete them; 0 keeps them."""
MAX_SECONDS = 10 * 365 * 86400
"""The longest duration any setting, delay or job timeout accepts: ten years."""
MAX_OUTPUT_LIMIT = 1024**3
"""The most output a worker may hold per stream and attempt."""
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}


def _number(text: str, key: str) -> float:
    try:
        value = float(text.strip().removesuffix("s"))
    except ValueError:
        raise errors.FieldError(key, f'must be a number (got "{text}")') from None
    if not math.isfinite(value):
        raise errors.FieldError(key, f'must be a finite number (got "{text}")')
    return value


def _between(low: float, high: float) -> Callable[[str, str], float]:
    def parse(text: str, key: str) -> float:
        value = _number(text, key)
        if not low <= value <= high:
            raise errors.FieldError(
                key, f'must be a number from {low:g} to {high:g} (got "{text}")'
            )
        return value

    return parse


_DURATION_RE = re.compile(
    r"(?:([0-9]+(?:\.[0-9]+)?)d)?(?:([0-9]+(?:\.[0-9]+)?)h)?"
    r"(?:([0-9]+(?:\.[0-9]+)?)m)?(?:([0-9]+(?:\.[0-9]+)?)s)?"
)
_DURATION_UNITS = (86_400, 3_600, 60, 1)


def duration_seconds(text: str) -> float | None:
    """Seconds in `90`, `1.5`, `10m`, `1h30m`, `7d`; None when `text` is none of these."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION_RE.fullmatch(text)
    if not text or match is None or not any(match.groups()):
        return None
    return sum(
        float(part) * unit
        for part, unit in zip(match.groups(), _DURATION_UNITS, strict=True)
        if part
    )


def _duration(text: str, key: str) -> float:
    if len(text) > 32 or (value := duration_seconds(text)) is None or not math.isfinite(value):
        raise errors.FieldError(
            key, f'must be a duration like 3600, 12h or 7d, 0 for ever (got "{text}")'
        )
    if not 0 <= value <= MAX_SECONDS:
        raise errors.FieldError(key, f'must be from 0 (keep for ever) to 10 years (got "{text}")')
    return value


def _count(text: str, key: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise errors.FieldError(key, f'must be a whole number >= 0 (got "{text}")') from None
    if not 0 <= value <= 10_000:
        raise errors.FieldError(key, f'must be a whole number from 0 to 10000 (got "{text}")')
    return value


def _size(text: str, key: str) -> int:
    # At most 12 ASCII digits: int() of thousands of digits raises, and \d takes any script's.
    match = re.fullmatch(r"\s*([0-9]{1,12})\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    size = int(match.group(1)) * _SIZE_UNITS.get(unit, 0) if match else 0
    if not 1 <= size <= MAX_OUTPUT_LIMIT:
        raise errors.FieldError(
            key, f'must be a size from 1 byte to 1GiB, like 65536 or 1MiB (got "{text}")'
        )
    return size


@record
class Config:
    """Checked configuration. Field names are the canonical key names."""

    max_retries: int = MAX_RETRIES
    backoff_base: float = BACKOFF_BASE
    max_backoff: float = MAX_BACKOFF
    backoff_jitter: float = BACKOFF_JITTER
    job_timeout: float = JOB_TIMEOUT
    poll_interval: float = POLL_INTERVAL
    output_limit: int = OUTPUT_LIMIT
    lease: float = LEASE
    keep_completed: float = KEEP_FINISHED
    keep_cancelled: float = KEEP_FINISHED


PARSERS: dict[str, Callable[[str, str], float | int]] = {
    "max_retries": _count,
    "backoff_base": _between(1.0, 1000.0),
    "max_backoff": _between(0.0, MAX_SECONDS),
    "backoff_jitter": _between(0.0, 1.0),
    "job_timeout": _between(0.0, MAX_SECONDS),
    "poll_interval": _between(0.01, 3600.0),
    "output_limit": _size,
    "lease": _between(1.0, 86400.0),
    "keep_completed": _duration,
    "keep_cancelled": _duration,
}
KEYS = field_names(Config)


def canonical_key(key: str) -> str:
    """Return the canonical name of a key, accepting hyphens; raise for an unknown key."""
    name = key.strip().lower().replace("-", "_")
    if name not in PARSERS:
        raise errors.UsageError(f'unknown config key "{key}" (known keys: {", ".join(KEYS)})')
    return name


def parse_value(key: str, text: str) -> int | float:
    """Check a value for a key and return it parsed. Raises FieldError naming the key."""
    name = canonical_key(key)
    return PARSERS[name](text, name)


def from_stored(stored: Mapping[str, str]) -> Config:
    """Build a Config from stored text values; unknown or unparsable stored values are ignored."""
    values: dict[str, int | float] = {}
    for key, text in stored.items():
        if key in PARSERS:
            try:
                values[key] = PARSERS[key](text, key)
            except errors.FieldError:
                continue
    return Config(**values)  # type: ignore[arg-type]


def format_value(value: int | float) -> str:
    """Render a value the way `config get` prints it."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
