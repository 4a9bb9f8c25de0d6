"""Only the worker's own user can wake it (defect 14).

Abstract Unix sockets have no permissions, so any local user could flood an idle worker with
wake-ups, each one a look at the queue. Wake-up sockets now live in a directory only their owner
can enter. These tests need root, to act as another user (`nobody`); CI runs as root.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from queuectl.store.sqlite import wakeup

NOBODY = 65534

needs_root = pytest.mark.skipif(os.getuid() != 0, reason="acting as another user needs root")


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tmp_path.chmod(0o755)  # others may pass through, as through /run/user or /tmp
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path / "queuectl"


def _send_as(uid: int, address: str) -> int:
    """From a child process running as `uid`: 0 when the datagram was sent, else the errno."""
    pid = os.fork()
    if pid == 0:  # the child: become the other user, try, report by exit code
        code = 0
        try:
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"", address)
        except OSError as exc:
            code = exc.errno or 1
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@needs_root
def test_another_user_cannot_reach_a_workers_wake_up_socket(runtime_dir: Path):
    listener = wakeup.Listener()
    address = listener.address
    try:
        assert address is not None
        assert Path(address).parent == runtime_dir
        info = runtime_dir.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
        assert _send_as(NOBODY, address) != 0, "another user could wake the worker"
        assert not listener.wait(0)
        wakeup.notify([address])  # its own user can
        assert listener.wait(5)
    finally:
        listener.close()
    assert not Path(address).exists()  # closing removes the socket file


def test_a_directory_others_could_write_is_refused(runtime_dir: Path):
    runtime_dir.mkdir(mode=0o700)
    runtime_dir.chmod(0o777)  # as if someone loosened it, or made it under umask 000
    listener = wakeup.Listener()
    try:
        assert listener.address is None  # no listener: the worker polls instead
        assert not listener.wait(0)
    finally:
        listener.close()


@needs_root
def test_a_directory_made_by_another_user_is_refused(runtime_dir: Path):
    runtime_dir.mkdir(mode=0o700)
    os.chown(runtime_dir, NOBODY, NOBODY)  # made first by someone else, to catch our sockets
    listener = wakeup.Listener()
    try:
        assert listener.address is None
    finally:
        listener.close()


def test_a_socket_whose_worker_died_is_removed_by_the_next_notifier(runtime_dir: Path):
    listener = wakeup.Listener()
    address = listener.address
    assert address is not None
    listener._sock.close()  # type: ignore[union-attr]  # dies without removing its file
    assert Path(address).exists()
    wakeup.notify([address])
    assert not Path(address).exists()
