"""Shell completion: the scripts, and the candidates the shell gets (click's bash protocol)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from queuectl.store import Store
from tests.helpers import QUEUECTL, enqueue_one, ok, run_cli


def _candidates(*words: str) -> list[str]:
    """What bash would be offered for the last word of `queuectl WORDS...`."""
    line = " ".join(["queuectl", *words])
    done = subprocess.run(
        [QUEUECTL],
        env={
            **os.environ,
            "_QUEUECTL_COMPLETE": "bash_complete",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words)),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, ""), done
    return [item.partition(",")[2] for item in done.stdout.splitlines() if item]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_script_of_each_shell(shell: str, tmp_path: Path) -> None:
    script = ok(run_cli(tmp_path / "unused.db", "completion", shell))
    assert "_QUEUECTL_COMPLETE" in script
    assert not (tmp_path / "unused.db").exists()


def test_commands_options_states_and_config_keys() -> None:
    assert _candidates("ca") == ["cancel"]
    assert "--burst" in _candidates("worker", "start", "--b")
    assert _candidates("list", "--state", "c") == ["completed", "cancelled"]
    assert _candidates("config", "set", "backoff_b") == ["backoff_base"]


def test_job_ids_and_queue_names_come_from_the_store(db: str, store: Store) -> None:
    enqueue_one(store, id="job-one", command="true", queue="mail")
    enqueue_one(store, id="job-two", command="true")
    enqueue_one(store, id="other", command="true")
    assert sorted(_candidates("--db", db, "show", "job-")) == ["job-one", "job-two"]
    assert sorted(_candidates("--db", db, "cancel", "other", "job-t")) == ["job-two"]
    assert _candidates("--db", db, "list", "--queue", "") == ["default", "mail"]


def test_a_missing_store_offers_nothing_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    assert _candidates("--db", str(missing), "show", "") == []
    assert not missing.exists()
