"""Messages the core marks for translation without doing any I/O.

The core (sans-I/O) never reads a catalogue: a message it shows to a person is a
:class:`Msg`, a ``str`` holding the English sentence (so logs, tests and ``str(exc)``
read as before) that also keeps its template and named values. The edge
(:func:`meshsync.host.i18n.localize`, called by the CLI and the pages) looks the
template up in the reader's catalogue and fills the same values in.
Babel extracts the templates (keyword ``Msg``; docs/architecture.md §9).
"""

from __future__ import annotations

from typing import Any


class Msg(str):
    """An English sentence with its template: ``Msg("no record %(key)s", key=k)``.

    The template is a whole sentence with named ``%(name)s`` placeholders, so a
    translation may put the values in any order.
    """

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, /, **params: Any) -> Msg:
        """The sentence ``template % params`` (``template`` itself without params)."""
        self = super().__new__(cls, template % params if params else template)
        self.template = template
        self.params = params
        return self


def N_(template: str) -> str:
    """Mark a constant ``template`` for extraction; it is translated where shown."""
    return template
