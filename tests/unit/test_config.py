"""Config keys: defaults, key spelling, value parsing, and tolerant reading of stored values."""

from __future__ import annotations

import pytest

from queuectl import config, errors, record


def test_defaults():
    cfg = config.Config()
    assert cfg == config.from_stored({})
    assert cfg.max_retries == 3
    assert cfg.backoff_base == 2.0
    assert cfg.max_backoff == 3600.0
    assert cfg.backoff_jitter == 0.0
    assert cfg.job_timeout == 0.0
    assert cfg.poll_interval == 1.0
    assert cfg.output_limit == 1024 * 1024
    assert cfg.lease == 30.0


def test_every_config_field_has_a_parser():
    assert set(config.KEYS) == set(config.PARSERS)
    assert record.field_names(config.Config) == config.KEYS


@pytest.mark.parametrize(
    ("key", "canonical"),
    [
        ("max_retries", "max_retries"),
        ("max-retries", "max_retries"),
        ("MAX-RETRIES", "max_retries"),
        (" backoff-base ", "backoff_base"),
        ("output-limit", "output_limit"),
    ],
)
def test_key_spellings(key, canonical):
    assert config.canonical_key(key) == canonical


@pytest.mark.parametrize("key", ["retries", "", "max__retries", "max retries", "lease_s"])
def test_unknown_key_is_a_usage_error(key):
    with pytest.raises(errors.UsageError) as info:
        config.canonical_key(key)
    assert not isinstance(info.value, errors.FieldError)
    assert "known keys" in str(info.value)
    assert "max_retries" in str(info.value)
    with pytest.raises(errors.UsageError):
        config.parse_value(key, "1")


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("max_retries", "0", 0),
        ("max-retries", " 5 ", 5),
        ("backoff_base", "1", 1.0),
        ("backoff_base", "3.5", 3.5),
        ("max_backoff", "0", 0.0),
        ("max_backoff", "90s", 90.0),
        ("backoff_jitter", "0", 0.0),
        ("backoff_jitter", "1", 1.0),
        ("backoff_jitter", "0.25", 0.25),
        ("job_timeout", "0", 0.0),
        ("job_timeout", "2.5", 2.5),
        ("poll_interval", "0.01", 0.01),
        ("lease", "1", 1.0),
        ("lease", "45s", 45.0),
        ("output_limit", "1", 1),
        ("output_limit", "65536", 65536),
        ("output_limit", "512k", 512 * 1024),
        ("output_limit", "512KB", 512 * 1024),
        ("output_limit", "1MiB", 1024**2),
        ("output_limit", "1m", 1024**2),
        ("output_limit", "1 GB", 1024**3),
        ("output_limit", "10b", 10),
    ],
)
def test_valid_values(key, text, expected):
    value = config.parse_value(key, text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("max_retries", "-1"),
        ("max_retries", "1.5"),
        ("max_retries", "three"),
        ("max_retries", ""),
        ("backoff_base", "0.5"),
        ("backoff_base", "abc"),
        ("max_backoff", "-1"),
        ("max_backoff", "inf"),
        ("max_backoff", "nan"),
        ("backoff_jitter", "1.5"),
        ("backoff_jitter", "-0.1"),
        ("job_timeout", "-1"),
        ("poll_interval", "0"),
        ("poll_interval", "0.001"),
        ("lease", "0.5"),
        ("lease", "30 minutes"),
        ("output_limit", "0"),
        ("output_limit", "1.5M"),
        ("output_limit", "1TB"),
        ("output_limit", "-5"),
        ("output_limit", "lots"),
        ("output_limit", ""),
    ],
)
def test_invalid_values_name_the_key(key, text):
    with pytest.raises(errors.FieldError) as info:
        config.parse_value(key, text)
    assert info.value.field == key
    assert f'"{text}"' in info.value.problem  # the message quotes what was given


def test_field_error_uses_the_canonical_key():
    with pytest.raises(errors.FieldError) as info:
        config.parse_value("Max-Retries", "x")
    assert info.value.field == "max_retries"


def test_from_stored_reads_values():
    cfg = config.from_stored({"max_retries": "5", "lease": "12", "output_limit": "1MiB"})
    assert cfg == config.Config(max_retries=5, lease=12.0, output_limit=1024**2)
    assert isinstance(cfg.max_retries, int)


def test_from_stored_ignores_junk():
    cfg = config.from_stored(
        {
            "max_retries": "lots",
            "backoff_base": "0.1",
            "no_such_key": "1",
            "max-backoff": "5",  # stored keys are canonical; a hyphenated one is not a key
            "lease": "9",
        }
    )
    assert cfg == config.Config(lease=9.0)


@pytest.mark.parametrize(
    ("value", "text"),
    [(3, "3"), (3.0, "3"), (2.5, "2.5"), (0.0, "0"), (1048576, "1048576")],
)
def test_format_value(value, text):
    assert config.format_value(value) == text


@pytest.mark.parametrize("key", config.KEYS)
def test_default_values_survive_format_and_parse(key):
    default = getattr(config.Config(), key)
    assert config.parse_value(key, config.format_value(default)) == default


@pytest.mark.parametrize("text", ["9" * 5000, "\u0661\u0662KiB", "1" * 13])
def test_an_absurd_size_is_a_field_error_not_a_crash(text: str) -> None:
    with pytest.raises(errors.FieldError, match="output_limit"):
        config.parse_value("output_limit", text)
