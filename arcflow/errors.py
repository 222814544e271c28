"""User mistakes as one line: the command-line tools' shared error handling.

Code that detects a mistake of the user's (a missing config, a misspelt key, an output path that
cannot be written, a size the model cannot take, a checkpoint of another run) raises
:class:`UserError` with a message that says what was wrong and what to do. :func:`run_cli` turns
it into ``error: <message>`` on stderr and exit code 2; ``--debug`` on the command line or
``ARCFLOW_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's code for a Ctrl-C
DEBUG_ENV = "ARCFLOW_DEBUG"
DEBUG_FLAG = "--debug"


class UserError(Exception):
    """A mistake in what the user asked for; its message is the whole report."""


class SourceError(UserError, OSError):
    """A model, adapter or text encoder that could not be loaded from where the config or the
    command line says (offline, a typo); an OSError too, as the libraries' own load errors are."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def writable_dir(path: str | Path, flag: str) -> Path:
    """Check that folder ``path`` exists or can be created and written to (creates nothing)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is an existing file, not a folder: name a folder")
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        reason = f"{existing} is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"no permission to write in {existing}"
    else:
        return path
    raise UserError(f"{flag} {path} is not writable ({reason}): choose a folder you can write to")


def debug_requested(argv: Sequence[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run_cli(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` (``--debug`` removed) and return its exit code; a UserError becomes one
    line on stderr (from rank 0 only under torchrun) and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    # A tool started beside a busy process takes the idle cores only (arcflow.threads).
    from arcflow.threads import configure_cpu_threads

    configure_cpu_threads()
    try:
        return main([arg for arg in argv if arg != DEBUG_FLAG]) or 0
    except UserError as error:
        if debug:
            raise
        if os.environ.get("RANK", "0") == "0":
            message = " ".join(str(error).split())
            print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # Ctrl-C outside training (which checkpoints and exits 75 itself): loading, sampling
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
