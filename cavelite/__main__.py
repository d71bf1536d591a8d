"""``python -m cavelite`` and the ``cavelite`` console script.

This module imports nothing heavy before it can catch Ctrl-C, so an
interrupt while the command is still loading exits 130 with one line, like
an interrupt at any later point, never with a traceback.
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def console_entry() -> None:
    """Run `cavelite.cli.main`, then exit in a way no late signal can turn into a traceback."""
    try:
        from cavelite.cli import main

        code = main()
    except KeyboardInterrupt:  # only before main() runs: main() handles its own
        sys.stderr.write("cavelite: interrupted\n")
        code = EXIT_INTERRUPTED
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    # What is left is interpreter shutdown (closing the zygote): a signal now just ends it.
    signal.signal(signal.SIGINT, lambda *_: os._exit(EXIT_INTERRUPTED))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(EXIT_TERMINATED))
    sys.exit(code)


if __name__ == "__main__":
    console_entry()
