"""Rewrite (or ``--check``) the session state diagram in docs/protocol.md.

``python tools/session_diagram.py [PATH] [--check]`` replaces the part of ``PATH``
(default: this repository's ``docs/protocol.md``, found from this file, so it works from
any working directory) between the markers with
:func:`meshsync.protocol.diagram.render`; ``--check`` only says whether it is up to
date (exit 1 if not) and changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meshsync.protocol import diagram

DEFAULT_DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def main(argv: list[str] | None = None) -> int:
    """Command line: rewrite (or ``--check``) the document; returns the exit status."""
    parser = argparse.ArgumentParser(prog="tools/session_diagram.py",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_DOC)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the document is not up to date; change nothing")
    args = parser.parse_args(argv)
    text = args.path.read_text(encoding="utf-8")
    wanted = diagram.update(text)
    if args.check:
        if wanted != text:
            print(f"{args.path}: session state diagram is out of date; run "
                  f"{diagram.COMMAND}", file=sys.stderr)
            return 1
        return 0
    if wanted != text:
        args.path.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
