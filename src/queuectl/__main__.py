from __future__ import annotations

from queuectl.cli import main

main()
