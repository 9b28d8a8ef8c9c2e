"""``python -m strattack ...`` and the ``strattack`` script: the command line of
:mod:`strattack.cli`, started so that an interrupt while it imports (torch takes seconds) ends it
quietly."""
from __future__ import annotations

#: The exit status of a process ended by SIGINT, as shells report it (128 + 2).
INTERRUPTED = 130


def run() -> None:
    """Import and run the command line; Ctrl-C during the import exits with status 130 and no
    traceback (the package's own import imports nothing heavy, so the interrupt lands here)."""
    try:
        from .cli import main
    except KeyboardInterrupt:
        raise SystemExit(INTERRUPTED) from None
    main()


if __name__ == "__main__":
    run()
