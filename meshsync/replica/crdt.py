"""The merge: per-field multi-value registers with causal supersession.

A record's state is a pure function of the *set* of ops applied to it, so merge is
commutative, associative and idempotent (a state-based CRDT in the sense of
Shapiro et al., "Conflict-free Replicated Data Types", SSS 2011; the multi-value
register with explicit predecessors is the model of Automerge's op sets).

* A put writes some fields. Each written field gets an *entry* ``(op id, value)``.
  The put's ``pred`` names the op ids it has seen; for each field it writes, it
  supersedes those ops' entries, and it supersedes any tombstone it names.
* A delete is a tombstone that supersedes every entry (and tombstone) of the ops in
  its ``pred``. Tombstones never expire; a later put that names the delete in its
  ``pred`` supersedes it and so restores the record.
* An entry or tombstone is *live* unless some op in the set supersedes it, whatever
  the order of arrival: references to ops not yet received are remembered.

Causality beats clocks: an edit made after seeing a value names it and replaces it.
Only live entries of one field that do not supersede each other are a conflict; the
visible value is the one with the greatest op id ``(hlc, author)``; the others stay
listed as conflicts until an op that saw them all supersedes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meshsync.model import codec
from meshsync.model.change import Delete, OpId, Put
from meshsync.model.errors import DecodeError

if TYPE_CHECKING:
    from meshsync.store.base import RecordRow

ALL = "*"  # supersession key of a delete's pred: every field and the tombstone
TOMB = "#"  # supersession key of a put's pred: the tombstone only


@dataclass(eq=False)
class RecordState:
    """Everything a device holds about one record.

    ``entries[field][op_id] = value`` (live only), ``tombs`` = live delete op ids,
    ``superseded[key]`` = op ids named by preds, keyed by field, ``*`` or ``#``.
    """

    _entries: dict[str, dict[OpId, Any]] | None = field(default=None, repr=False)
    tombs: set[OpId] = field(default_factory=set)
    superseded: dict[str, set[OpId]] = field(default_factory=dict)
    #: Set while the state is exactly one put (op id, canonical fields) and nothing
    #: else; lets :meth:`encode` skip its loops (the bulk of a baseline import).
    _single: tuple[OpId, dict[str, Any]] | None = field(default=None, compare=False,
                                                          repr=False)

    @property
    def entries(self) -> dict[str, dict[OpId, Any]]:
        """``field -> {op id: value}`` of live entries (built on first use for a state
        that is a single put, so a baseline import never builds it)."""
        if self._entries is None:
            single = self._single
            self._entries = {} if single is None else {
                name: {single[0]: value} for name, value in single[1].items()}
        return self._entries

    @entries.setter
    def entries(self, value: dict[str, dict[OpId, Any]]) -> None:
        self._entries = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RecordState) and self.encode() == other.encode()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def _is_superseded(self, key: str, op: OpId) -> bool:
        return op in self.superseded.get(key, ()) or op in self.superseded.get(ALL, ())

    def _supersede(self, key: str, op: OpId) -> None:
        self.superseded.setdefault(key, set()).add(op)

    def apply_put(self, op_id: OpId, fields: dict[str, Any], pred: tuple[OpId, ...], *,
                  sorted_fields: bool = False) -> None:
        """Apply a put op (idempotent; any order). ``sorted_fields``: the caller
        guarantees ``fields`` is in canonical (sorted) order, as every op of a
        :class:`~meshsync.model.change.Change` is; it only saves a check."""
        if not pred and not self.entries and not self.tombs and not self.superseded:
            # A new record (the bulk of a baseline import): nothing to supersede, and
            # its entries are built only if something reads them.
            if fields:
                if not sorted_fields and list(fields) != sorted(fields):
                    fields = dict(sorted(fields.items()))
                self._entries, self._single = None, (op_id, fields)
            return
        self.entries  # noqa: B018 - build the entries before forgetting the single put
        self._single = None
        for p in pred:
            self._supersede(TOMB, p)
            self.tombs.discard(p)
            for name in fields:
                self._supersede(name, p)
                self._drop_entry(name, p)
        for name, value in fields.items():
            if not self._is_superseded(name, op_id):
                self.entries.setdefault(name, {})[op_id] = value

    def apply_op(self, op_id: OpId, op: Put | Delete, *, sorted_fields: bool = False) -> None:
        """Apply one op of a change, ``op_id`` being its ``(hlc, author)``: a put's fields
        (see :meth:`apply_put` for ``sorted_fields``) or a delete."""
        if type(op) is Put:
            self.apply_put(op_id, op.fields, op.pred, sorted_fields=sorted_fields)
        else:
            self.apply_delete(op_id, op.pred)

    def apply_delete(self, op_id: OpId, pred: tuple[OpId, ...]) -> None:
        """Apply a delete op (idempotent; any order)."""
        self.entries  # noqa: B018 - build the entries before forgetting the single put
        self._single = None
        for p in pred:
            self._supersede(ALL, p)
            self.tombs.discard(p)
            for name in list(self.entries):
                self._drop_entry(name, p)
        if not self._is_superseded(TOMB, op_id):
            self.tombs.add(op_id)

    def _drop_entry(self, name: str, op: OpId) -> None:
        values = self.entries.get(name)
        if values and op in values:
            del values[op]
            if not values:
                del self.entries[name]

    # -- reading -----------------------------------------------------------

    def live_ops(self) -> set[OpId]:
        """Op ids a new local op must name as ``pred`` to supersede everything seen."""
        ops = set(self.tombs)
        for values in self.entries.values():
            ops.update(values)
        return ops

    def field_ops(self, names: Iterable[str]) -> set[OpId]:
        """Live op ids of the given fields plus live tombstones (pred of a local put)."""
        if self._single is None and not self._entries and not self.tombs:
            return set()  # a record not held yet (an import's new voters)
        ops = set(self.tombs)
        for name in names:
            ops.update(self.entries.get(name, ()))
        return ops

    def winner(self, name: str) -> tuple[OpId, Any]:
        """The visible ``(op id, value)`` of a field: the greatest op id among live entries."""
        values = self.entries[name]
        op = max(values)
        return op, values[op]

    def field_winner(self, name: str) -> tuple[OpId, Any] | None:
        """Like :meth:`winner`, or None when the field has no live entry; for a state
        that is a single put it builds no entries (progress classifies every record
        an import writes)."""
        single = self._single
        if single is not None:
            return (single[0], single[1][name]) if name in single[1] else None
        values = self.entries.get(name)
        if not values:
            return None
        op = max(values)
        return op, values[op]

    @property
    def deleted(self) -> bool:
        """True if a live tombstone is newer than every live entry (or there are none)."""
        if not self.tombs:
            return False
        newest_entry = max((max(v) for v in self.entries.values()), default=None)
        return newest_entry is None or max(self.tombs) > newest_entry

    @property
    def exists(self) -> bool:
        """True if the record holds any live entry or tombstone."""
        return bool(self.entries or self.tombs)

    def visible(self) -> dict[str, Any]:
        """Field name -> visible value (empty when deleted)."""
        single = self._single
        if single is not None:  # one put: its fields, already in canonical order
            return dict(single[1])
        if self.deleted:
            return {}
        return {name: self.winner(name)[1] for name in sorted(self.entries)}

    def conflicts(self) -> dict[str, list[tuple[OpId, Any]]]:
        """Fields with several live entries -> all of them, winner first.

        A live tombstone beside live entries is reported under the key ``*`` (a
        delete concurrent with an edit).
        """
        out: dict[str, list[tuple[OpId, Any]]] = {}
        for name, values in self.entries.items():
            if len(values) > 1:
                out[name] = sorted(values.items(), key=lambda kv: kv[0], reverse=True)
        if self.tombs and self.entries:
            out[ALL] = [(t, None) for t in sorted(self.tombs, reverse=True)]
        return out

    # -- encoding ----------------------------------------------------------

    @property
    def has_conflict(self) -> bool:
        """True if :meth:`conflicts` would report anything (cheap)."""
        return bool(self.tombs and self.entries) or any(
            len(v) > 1 for v in self.entries.values())

    def _encode_simple(self) -> bytes | None:
        """Fast path of :meth:`encode` for one version per field by one author and no
        tombstones or remembered preds (a record nobody has edited concurrently)."""
        if self._single is not None:
            (h, a), fields = self._single
            return codec.pack([a, h, fields])  # sorted when it was stored (apply_put)
        if self.tombs or self.superseded:
            return None
        author = None
        items = {}
        entries = self.entries
        for name in sorted(entries):
            values = entries[name]
            if len(values) != 1:
                return None
            for (h, a), v in values.items():
                if a is not author:
                    if author is not None and a != author:
                        return None
                    author = a
                items[name] = [[h, 0, v]]
        hlcs = {pair[0][0] for pair in items.values()}
        if author is not None and len(hlcs) == 1:
            # Every field from one put: the compact form [author, hlc, {field: value}].
            return codec.pack([author, hlcs.pop(), {n: pair[0][2] for n, pair in items.items()}])
        return codec.pack([[author] if author is not None else [], items, [], {}])

    def encode_with_flags(self) -> tuple[bytes, bool, bool]:
        """``(encode(), deleted, has_conflict)``, cheaply for the common simple state."""
        simple = self._encode_simple()
        if simple is not None:
            return simple, False, False
        return self.encode(), self.deleted, self.has_conflict

    def encode(self) -> bytes:
        """Canonical bytes: equal states give equal bytes on every device."""
        simple = self._encode_simple()
        if simple is not None:
            return simple
        authors = sorted(
            {a for v in self.entries.values() for _, a in v}
            | {a for _, a in self.tombs}
            | {a for s in self.superseded.values() for _, a in s}
        )
        index = {a: i for i, a in enumerate(authors)}

        def ids(ops: Any) -> list[list[int]]:
            return [[h, index[a]] for h, a in sorted(ops)]

        entries = {
            name: [[h, index[a], values[(h, a)]] for h, a in sorted(values)]
            for name, values in sorted(self.entries.items())
        }
        superseded = {k: ids(v) for k, v in sorted(self.superseded.items())}
        return codec.pack([authors, entries, ids(self.tombs), superseded])

    @classmethod
    def decode(cls, data: bytes) -> RecordState:
        """Inverse of :meth:`encode`; :class:`DecodeError` if ``data`` is not a state."""
        try:
            raw = codec.unpack(data, max_bytes=1 << 30)
            if len(raw) == 3:  # compact form of a single put
                author, h, fields = raw
                state = cls()
                state._single = ((h, author), fields)
                return state
            authors, entries, tombs, superseded = raw
            state = cls()
            for name, items in entries.items():
                state.entries[name] = {(h, authors[i]): v for h, i, v in items}
            state.tombs = {(h, authors[i]) for h, i in tombs}
            for k, items in superseded.items():
                state.superseded[k] = {(h, authors[i]) for h, i in items}
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise DecodeError(f"corrupt record state: {exc}") from exc
        return state

    @classmethod
    def of_row(cls, row: RecordRow | None) -> RecordState:
        """The state stored in ``row`` (from ``Store.load_record``), or an empty state
        for a record not held (None). Raises :class:`DecodeError` as :meth:`decode`."""
        return cls.decode(row.state) if row is not None else cls()
