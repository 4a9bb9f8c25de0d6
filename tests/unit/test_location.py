"""Splitting a PostgreSQL URL: queuectl takes `schema`, libpq gets the rest as written."""

from __future__ import annotations

import pytest

from queuectl.errors import FieldError
from queuectl.store.location import parse_postgres


def test_schema_is_taken_out_and_every_other_parameter_kept_byte_for_byte() -> None:
    url = "postgresql://u:p%2Bw@h:5/db?options=-c%20a%3Db&schema=jobs&sslmode=disable"
    where = parse_postgres(url)
    assert where.schema == "jobs"
    assert where.conninfo == "postgresql://u:p%2Bw@h:5/db?options=-c%20a%3Db&sslmode=disable"
    assert "p%2Bw" not in where.shown


def test_without_schema_the_default_and_the_url_unchanged() -> None:
    where = parse_postgres("postgres://h/db?application_name=a+b")
    assert where.schema == "queuectl"
    assert where.conninfo == "postgres://h/db?application_name=a+b"


def test_a_bad_schema_names_db_and_the_rule() -> None:
    with pytest.raises(FieldError, match="schema must be"):
        parse_postgres("postgresql://h/db?schema=Bad-Name")
