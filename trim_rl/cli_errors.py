"""How every command ends on a user error: one line naming the file, key or flag, exit code 2.

A bug (any other exception) still shows its traceback; Ctrl-C ends with one line and exit code 130.
``TRIM_RL_TRACEBACK=1`` shows the traceback of user errors too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

# what a user can cause: bad configs / values (ValueError and its kinds: ConfigError, BudgetError,
# TreeFormatError), and files that are missing, in the way or unreadable
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``finally`` and temporary-file cleanup runs."""


def _raise_terminated(signum, frame):
    raise Terminated()


def run_cli(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body; user errors become ``prog: message`` on stderr and exit code 2;
    Ctrl-C and SIGTERM end with one line (exit 130 / 143), temporary files removed."""
    import signal
    import threading

    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return int(body() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 143
    except USER_ERRORS as exc:
        if os.environ.get("TRIM_RL_TRACEBACK"):
            raise
        msg = str(exc) if not isinstance(exc, OSError) or not exc.filename else _os_message(exc)
        print(f"{prog}: {msg.splitlines()[0] if msg else type(exc).__name__}", file=sys.stderr)
        return 2
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _os_message(exc: OSError) -> str:
    what = {FileNotFoundError: "no such file or folder", PermissionError: "permission denied",
            IsADirectoryError: "is a folder, expected a file", NotADirectoryError: "a part of the path is a file",
            FileExistsError: "already exists"}.get(type(exc), exc.strerror or str(exc))
    return f"{exc.filename}: {what}"
