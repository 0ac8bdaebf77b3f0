"""Draw the session's state diagram from its transition table into docs/protocol.md.

``python -m meshsync.protocol.diagram [PATH]`` rewrites the part of ``PATH`` (default
``docs/protocol.md``) between :data:`BEGIN` and :data:`END` with :func:`render`;
``--check`` only says whether it is up to date (exit 1 if not). The drawing is made
from :data:`meshsync.protocol.states.TRANSITIONS` alone, so it cannot drift from the
code without the check (a test) noticing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meshsync.protocol.states import LIVE, TRANSITIONS, State, trigger_name

BEGIN = "<!-- session-table:begin -->"
END = "<!-- session-table:end -->"
DEFAULT_DOC = Path("docs/protocol.md")


def _node(state: State) -> str:
    return state.name.lower()


def _edges() -> dict[tuple[State, State], list[str]]:
    """``(from, to) -> trigger names``, in table order."""
    edges: dict[tuple[State, State], list[str]] = {}
    for (state, trigger), target in TRANSITIONS.items():
        edges.setdefault((state, target), []).append(trigger_name(trigger))
    return edges


def mermaid() -> list[str]:
    """The diagram as mermaid ``stateDiagram-v2`` lines."""
    lines = ["stateDiagram-v2"]
    lines += [f'    state "{state.value}" as {_node(state)}' for state in State]
    lines.append(f"    [*] --> {_node(State.HELLO)}")
    for (source, target), names in _edges().items():
        lines.append(f"    {_node(source)} --> {_node(target)}: {', '.join(names)}")
    lines += [f"    {_node(State.DONE)} --> [*]", f"    {_node(State.FAILED)} --> [*]"]
    return lines


def table() -> list[str]:
    """The transitions as a markdown table, one row per ``(state, trigger)`` pair."""
    rows = ["| state | trigger | next state |", "|---|---|---|"]
    for (state, trigger), target in TRANSITIONS.items():
        rows.append(f"| {state.value} | {trigger_name(trigger)} | {target.value} |")
    return rows


def render() -> str:
    """The text that belongs between :data:`BEGIN` and :data:`END` (no markers)."""
    live = ", ".join(state.value for state in LIVE)
    return "\n".join([
        "Generated from `meshsync.protocol.states.TRANSITIONS` by",
        "`python -m meshsync.protocol.diagram`; do not edit by hand.",
        "",
        "Both ends run the same machine. An edge labelled `recv X` is taken when",
        "message X arrives; any other message in that state is a protocol error (the",
        "session sends ERROR and fails). The other labels are this side's own steps.",
        "Besides the table, every live state goes to failed on a local error, a timeout",
        f"or a lost connection: {live}. `same digests` also covers disjoint scopes.",
        "",
        "```mermaid",
        *mermaid(),
        "```",
        "",
        *table(),
    ])


def update(text: str) -> str:
    """``text`` (a whole document) with the part between the markers replaced.

    Raises ValueError if the markers are missing or out of order.
    """
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the document needs {BEGIN} and then {END}")
    return text[:start + len(BEGIN)] + "\n" + render() + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    """Command line: rewrite (or ``--check``) the document; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m meshsync.protocol.diagram",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_DOC)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the document is not up to date; change nothing")
    args = parser.parse_args(argv)
    text = args.path.read_text(encoding="utf-8")
    wanted = update(text)
    if args.check:
        if wanted != text:
            print(f"{args.path}: session state diagram is out of date; run "
                  "python -m meshsync.protocol.diagram", file=sys.stderr)
            return 1
        return 0
    if wanted != text:
        args.path.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
