"""``python -m taxi_assets.cli ...``."""

import sys
from types import TracebackType

from taxi_assets.cli import main


def _say_interrupted(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    """Ctrl-C: one line, not a traceback (an interruption is not a fault of the command)."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
    else:
        sys.__excepthook__(kind, error, traceback)


# The KeyboardInterrupt is left uncaught, only its report changed: Python then ends the
# process by SIGINT, so that a shell or a script running the command stops as well.
sys.excepthook = _say_interrupted
sys.exit(main())
