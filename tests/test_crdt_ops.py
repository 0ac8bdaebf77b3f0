"""RecordState.apply_op and RecordState.of_row: the one way every layer applies an op
of a change and loads a stored state (node, receiver, quarantine)."""

from __future__ import annotations

from meshsync.model.change import Delete, canonical_put
from meshsync.replica.crdt import RecordState
from meshsync.store.base import RecordRow


def test_apply_op_is_apply_put_or_apply_delete() -> None:
    put = canonical_put("voters", "v-1", {"nama": "Yosina", "b": 1}, ())
    by_op, by_hand = RecordState(), RecordState()
    by_op.apply_op((10, b"a" * 32), put)
    by_hand.apply_put((10, b"a" * 32), put.fields, put.pred)
    delete = Delete("voters", "v-1", ((10, b"a" * 32),))
    by_op.apply_op((11, b"a" * 32), delete)
    by_hand.apply_delete((11, b"a" * 32), delete.pred)
    assert by_op.encode() == by_hand.encode()
    assert by_op.deleted


def test_of_row_decodes_a_stored_state_or_gives_an_empty_one() -> None:
    assert RecordState.of_row(None).encode() == RecordState().encode()
    state = RecordState()
    state.apply_op((10, b"a" * 32), canonical_put("voters", "v-1", {"nama": "X"}, ()))
    row = RecordRow("a/b", "voters", "v-1", *state.encode_with_flags())
    assert RecordState.of_row(row).visible() == {"nama": "X"}
