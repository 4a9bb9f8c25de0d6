"""`python -m tests.chaos [quick|long] [--store sqlite|postgres | --db LOCATION] [--seed N]
[--no-faults] [--no-escapes] [--dir DIR]`.

Runs one chaos run outside pytest and prints its summary; exits 1 when an invariant broke.
`--store postgres` starts a PostgreSQL cluster for the run alone, whose server the killer
restarts, stops and cuts off too; `--db` runs on an existing store, without server faults.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import tempfile
from pathlib import Path

from tests.chaos import harness, server


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos")
    parser.add_argument("mode", nargs="?", default="quick", choices=sorted(harness.PROFILES))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-faults", action="store_true", help="run without the killer")
    parser.add_argument(
        "--no-escapes", action="store_true", help="no jobs whose setsid child closes its output"
    )
    parser.add_argument("--dir", type=Path, default=None, help="run here (default: /tmp/h3-*)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--store",
        choices=server.STORES,
        default="sqlite",
        help="a new store: a file in the run's directory, or a database on a server of its own",
    )
    where.add_argument(
        "--db", default=None, help="an existing store (a SQLite path or a PostgreSQL URL)"
    )
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="h3-chaos-", dir="/tmp"))
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    with contextlib.ExitStack() as stack:
        if args.db is not None:
            db, pg = args.db, None
        else:
            db, pg = stack.enter_context(server.own_store(args.store, root))
        result = harness.ChaosRun(
            root,
            harness.PROFILES[args.mode],
            seed,
            faults=not args.no_faults,
            escapes=not args.no_escapes,
            db=db,
            pg=pg,
        ).run()
    print(result.summary())
    for invariant in result.failed():
        print("\n" + result.explain(invariant))
    return 1 if result.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
