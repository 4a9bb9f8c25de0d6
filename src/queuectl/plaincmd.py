"""Commands that mean the same without a shell, so a job can start with one exec, not two.

Debian's /bin/sh (dash) does not replace itself with the last command of `sh -c`, as bash does:
`sh -c 'date'` is two execs, 3.2 ms against 1.7 ms for `date` started directly on the project's
machine (medians of 200; docs/benchmarks.md). A command runs without sh only when sh would do
nothing with it but split it at blanks and search PATH, and is left to sh at any doubt:

- every character is a letter, digit or one of `_ . / + % : , @ = -`, words separated by spaces
  or tabs: no quoting, expansion, globbing, `~`, comment, redirection, pipe, list or newline;
- the first word is no assignment (`=`), option (`-`) or sh builtin or keyword (`echo -e` and
  `/bin/echo -e` differ, `cd` has no program);
- it names a regular executable file that starts with `#!` or is an ELF binary (sh runs a file
  without either as a script), found on the job's PATH as sh searches it; a PATH with a relative
  or empty entry, or a relative path with `/`, is left to sh (the job's cwd would decide).

A missing command thus still gets sh's own exit 127 and message. What differs: a command that
dies of a signal is recorded as that signal, where sh would have exited 128 + N for it.
"""

from __future__ import annotations

import os
import re
import stat

_PLAIN = re.compile(r"[A-Za-z0-9_./+%:,@=-]+(?:[ \t]+[A-Za-z0-9_./+%:,@=-]+)*")
_SHELL_WORDS = frozenset(
    # dash's builtins (from dash(1)) and reserved words
    (
        *(".", ":", "[", "alias", "bg", "break", "cd", "chdir", "command", "continue", "echo"),
        *("eval", "exec", "exit", "export", "false", "fc", "fg", "getopts", "hash", "jobs"),
        *("kill", "local", "printf", "pwd", "read", "readonly", "return", "set", "shift"),
        *("test", "times", "trap", "true", "type", "ulimit", "umask", "unalias", "unset"),
        *("wait", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in"),
        *("then", "until", "while"),
    )
)
MAX_PLAIN = 4096
"""Longer commands go to sh: the pattern's work grows with them, and they are rarely plain."""


def argv(command: str, path: str | None) -> tuple[str, list[str]] | None:
    """The program and argv that run `command` the way `sh -c command` would; None: use sh.

    `path` is the job's PATH (None when it has none: sh's default search is left to sh).
    """
    if len(command) > MAX_PLAIN:
        return None
    command = command.strip(" \t")
    if not _PLAIN.fullmatch(command):
        return None
    words = command.split()
    first = words[0]
    if first in _SHELL_WORDS or "=" in first or first.startswith("-"):
        return None
    relative = "/" in first and not first.startswith("/")  # the job's cwd decides: sh's job
    program = None if relative else first if "/" in first else _search(first, path)
    if program is None or not _runnable(program):
        return None
    return program, words


def _search(name: str, path: str | None) -> str | None:
    """Where sh would find `name` on `path`, or None when it is not there or sh must decide."""
    if not path:
        return None
    dirs = path.split(":")
    if any(not entry.startswith("/") for entry in dirs):
        return None
    for entry in dirs:
        candidate = f"{entry.rstrip('/')}/{name}"
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):  # noqa: PTH113
            return candidate
    return None


def _runnable(program: str) -> bool:
    """True for an executable regular file that exec runs itself (a `#!` script or an ELF).

    Opened without blocking and checked to be a regular file before it is read: an executable
    FIFO or device named by a job must not hang the worker.
    """
    try:
        fd = os.open(program, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.read(fd, 4)
    except OSError:
        return False
    finally:
        os.close(fd)
    return (head[:2] == b"#!" or head == b"\x7fELF") and os.access(program, os.X_OK)
