"""Helpers of the fuzz tests: a hang guard, the checks every read must pass, and a tally of the
inputs tried (printed at the end of the session for docs/reliability.md)."""

from __future__ import annotations

import contextlib
import signal
from collections import Counter
from collections.abc import Iterator
from typing import Any

from amondask.chem import read_molecules
from amondask.errors import ErrorRecord, InputError

#: Inputs tried, by suite: docs/reliability.md reports these numbers.
TRIED: Counter[str] = Counter()

#: Words by which an error message tells the user what to do (every message must have one).
ACTIONS = (
    "check", "fix", "use ", "give", "remove", "save", "re-export", "add ", "neutralize", "extend",
    "fill", "drop", "write", "pass", "name the", "rename", "split", "make sure", "raise",
)  # fmt: skip


class Hang(AssertionError):
    """A read took longer than its guard allows."""


@contextlib.contextmanager
def hang_guard(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""

    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds} s: the input made the reader hang")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_error_row(error: ErrorRecord) -> None:
    """An error row says which record, at which stage, what went wrong and what to do."""
    assert error.record_id.strip(), error
    assert error.stage in ("read", "geometry", "amons", "label"), error
    assert error.error_type, error
    assert "unexpected error" not in error.message, f"a reader crashed on a record: {error}"
    message = error.message.lower()
    assert any(action in message for action in ACTIONS), f"message says not what to do: {error}"


def read_checked(source: Any, suite: str, *, timeout_s: int = 60, **options: Any):
    """``read_molecules(source)`` under a hang guard; an InputError (whole input unusable) is
    returned, any other exception fails. Every error row is checked."""
    TRIED[suite] += 1
    with hang_guard(timeout_s):
        try:
            result = read_molecules(source, **options)
        except InputError as exc:
            assert str(exc).strip()
            return exc
    for error in result.errors:
        check_error_row(error)
    return result
