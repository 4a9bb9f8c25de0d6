"""paths: where the store lives, and private directories whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from queuectl import paths


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run the test with umask 0, the worst case, and restore the caller's umask afterwards."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_every_missing_level_is_private(tmp_path: Path) -> None:
    leaf = tmp_path / "a" / "b" / "c"
    paths.make_private_dirs(str(leaf))
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", leaf)] == [0o700] * 3


@pytest.mark.usefixtures("open_umask")
def test_existing_directories_keep_their_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    paths.make_private_dirs(str(shared / "mine" / "deeper"))
    assert mode(shared) == 0o755
    assert mode(shared / "mine") == mode(shared / "mine" / "deeper") == 0o700
    paths.make_private_dirs(str(shared))  # nothing missing: nothing changes, no error
    assert mode(shared) == 0o755


def test_a_umask_that_takes_the_owners_bits_still_leaves_usable_directories(
    tmp_path: Path,
) -> None:
    old = os.umask(0o277)  # would make mkdir(0o700) create r-x------, unwritable for the next level
    try:
        paths.make_private_dirs(str(tmp_path / "x" / "y"))
    finally:
        os.umask(old)
    assert mode(tmp_path / "x") == mode(tmp_path / "x" / "y") == 0o700


@pytest.mark.parametrize("given", ["rel/dir", "rel/dir/", "./rel//dir"])
def test_relative_paths_and_slashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.chdir(tmp_path)
    paths.make_private_dirs(given)
    assert mode(tmp_path / "rel") == mode(tmp_path / "rel" / "dir") == 0o700


def test_a_file_in_the_way_is_an_os_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        paths.make_private_dirs(str(tmp_path / "file" / "sub"))
    with pytest.raises(FileExistsError):
        paths.make_private_dirs(str(tmp_path / "file"))


def test_empty_path_is_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    paths.make_private_dirs("")  # os.path.dirname("q.db") is "": nothing to create
    assert list(tmp_path.iterdir()) == []
