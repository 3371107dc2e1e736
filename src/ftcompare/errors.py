"""User-facing errors and the one-line exit of the entry points."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


class ConfigError(ValueError):
    """Bad input: the message names the setting, the bad value and the fix."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class Interrupted(Exception):
    """The run was stopped (Ctrl-C, SIGTERM); the exit code says by what (128 + the signal's number)."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class RunInUse(ConfigError):
    """The run folder belongs to a run that is still going: nothing may be written into it."""


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first line (for one-line errors), or its type when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextlib.contextmanager
def bad_input_exits(*errors: type[Exception], on_error: Callable[[], object] | None = None) -> Iterator[None]:
    """For the entry points: bad input is one `error: ...` line on stderr and exit code 2 (after `on_error`,
    which removes what the command had started to write)."""
    try:
        yield
    except (ConfigError, *errors) as err:
        print(f"error: {err}", file=sys.stderr)
        if on_error is not None:
            on_error()
        sys.exit(2)
