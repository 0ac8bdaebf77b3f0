"""Draw the session's state diagram from its transition table, as text (pure).

:func:`render` is the text that belongs between :data:`BEGIN` and :data:`END` in
docs/protocol.md; :func:`update` puts it into a document's text. Reading and rewriting
the file is ``tools/session_diagram.py`` (this package does no I/O: docs/architecture.md
§3). The drawing is made from :data:`meshsync.protocol.states.TRANSITIONS` alone, so it
cannot drift from the code without the check (a test) noticing.
"""

from __future__ import annotations

from meshsync.protocol.states import LIVE, TRANSITIONS, State, trigger_name

BEGIN = "<!-- session-table:begin -->"
END = "<!-- session-table:end -->"
#: The command that rewrites the document (named in the generated text).
COMMAND = "python tools/session_diagram.py"


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
        f"`{COMMAND}`; do not edit by hand.",
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
