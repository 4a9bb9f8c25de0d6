"""The chaos harness: real workers drain a mixed load while processes are killed and frozen.

`harness.py` runs and checks one chaos run; `test_chaos.py` asserts its invariants (skipped
unless QUEUECTL_CHAOS is `quick` or `long`); `python -m tests.chaos` runs it by hand.
"""
