"""The app's search index (meshsync/replica/search.py): built once, then kept up to date
from the change stream, folding names as ``coklit find`` does (docs/app.md)."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from helpers import Device
from meshsync.coklit.names import find
from meshsync.coklit.sample import generate
from meshsync.coklit.schema import register

from meshsync.replica.search import SearchIndex

PEOPLE = generate(3, "Jila", voters_per_tps=8, tps_per_kampung=1)
TPS = PEOPLE[0].partition
N = sum(p.partition == TPS for p in PEOPLE)  # 8, or a few more: households stay whole


def _filled(make_device: Callable[..., Device], kind: str) -> Device:
    device = make_device("phone", kind, partition=TPS)
    register(device.node)
    for n, person in enumerate(p for p in PEOPLE if p.partition == TPS):
        fields = {**person.fields, "nama": "Ma'ruf Wéya"} if n == 0 else person.fields
        device.node.put("voters", f"v-{n:04d}", fields, TPS)
    return device


def test_the_index_finds_what_coklit_find_finds_in_any_unicode_form(make_device) -> None:
    device = _filled(make_device, "sqlite")
    index = SearchIndex("voters")
    assert index.refresh(device.store) == N
    for typed in ("ma\u2019ruf", unicodedata.normalize("NFD", "WÉYA"), "maruf weya",
                  "Maʼruf", PEOPLE[0].fields["nik"][3:11]):
        found = [(e.partition, e.key) for e in index.search(typed)]
        assert found == [(r.partition, r.key) for r in find(device.node, typed)], typed
        assert found, typed
    assert index.search("   ") == [] and index.search("zzzz") == []
    assert index.counts() == {TPS: (0, N)}


def test_the_index_follows_edits_deletes_and_results_without_a_rebuild(make_device) -> None:
    device = _filled(make_device, "memory")
    index = SearchIndex("voters")
    index.refresh(device.store)
    device.node.put("voters", "v-0000", {"nama": "Yohana Kogoya"}, TPS)
    device.node.put("voters", "v-0001", {"coklit": "TMS", "tms": "meninggal"}, TPS)
    device.node.delete("voters", "v-0002", TPS)
    assert index.refresh(device.store) == 2  # reloads the touched live records only
    assert [e.key for e in index.search("kogoya")] == ["v-0000"]
    assert index.search("maruf") == []
    assert not index.find_key("v-0002")
    (tms,) = index.find_key("v-0001")
    assert (tms.label, tms.done) == ("TMS", True)
    assert index.counts() == {TPS: (1, N - 1)}
    belum_first = index.in_partition(TPS)
    assert belum_first[-1].key == "v-0001" and not belum_first[0].done
    assert index.refresh(device.store) == 0  # nothing new
