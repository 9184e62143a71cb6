"""Ctrl-C reported in one line, ``interrupted``, by a command's process
(``python -m taxi_assets.cli``, ``python -m taxi_assets.demo``): an interruption is not a
fault of the command, and its traceback would say nothing to the person who pressed it."""

import sys
from types import TracebackType


def _say_interrupted(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
    else:
        sys.__excepthook__(kind, error, traceback)


def report_ctrl_c_in_one_line() -> None:
    """Report an uncaught ``KeyboardInterrupt`` as ``interrupted`` on stderr. It is left
    uncaught, only its report changed: Python then ends the process by SIGINT, so that a
    shell or a script running the command stops as well."""
    sys.excepthook = _say_interrupted
