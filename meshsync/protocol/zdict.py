"""Preset zlib dictionaries for compressed frames, one versioned constant per id.

A compressed frame (:mod:`meshsync.protocol.frames`) is deflated with a preset
dictionary both ends hold: bytes a frame is likely to repeat, so that even a small
frame (an ACK, one officer's edit) finds matches from its first byte. Each HELLO lists
the dictionary ids its sender knows (``"zlib"``); the session uses the highest id both
list, or sends every frame uncompressed if they share none (docs/protocol.md,
"Compressed frames").

A dictionary's bytes never change once released: a new or better dictionary gets a new
id, and both stay (a test pins each one's SHA-256). They are built here, deterministically,
from constant word lists: the collection and field names of the voter schema
(``voters``, docs/architecture.md §4), their commonest values, and the msgpack
fragments of the session's own items. zlib prefers matches close to the data, so the
commonest strings go last.
"""

from __future__ import annotations

import msgpack

#: Names and values of the voter schema, rarest first (each is added msgpack-packed).
_VOTER_WORDS_1 = (
    # TMS reasons and disability kinds (coded values)
    "hak_pilih_dicabut", "bukan_penduduk", "salah_tps", "tidak_dikenal", "di_bawah_umur",
    "meninggal", "ganda", "tni", "polri", "fisik", "intelektual", "mental",
    "sensorik_wicara", "sensorik_rungu", "sensorik_netra",
    # field names, then the commonest values
    "dpt", "umur", "distrik", "kampung", "tps", "nkk", "kk", "kelurahan", "ktp_el",
    "disabilitas", "rt", "rw", "alamat", "status_kawin", "jenis_kelamin",
    "tanggal_lahir", "tempat_lahir", "nama", "nik", "keterangan", "tms", "coklit",
    "status", "pindah domisili", "pindah_domisili", "baru", "ubah", "B", "S", "P", "L",
    "TMS", "MS", "Jalan ", "Kampung ", "mimika/", "tps-0", "voters",
)

#: Msgpack fragments of the change stream (docs/protocol.md, "The change stream"):
#: array and item headers, a put with no pred, a 64-byte signature's bin header,
#: booleans and nil. Appended after the words.
_STREAM_FRAGMENTS_1 = (
    b"\x94\x04", b"\x93\x03", b"\x95\x01", b"\x92\x00\xc4\x20", b"\xc4\x40", b"\xc4\x20",
    b"\xc4\x08", b"\xc2", b"\xc3", b"\xc0", b"\x90", b"\x95\x00", b"\x94\x00",
    b"\x93\x05", b"\x92\x06", b"\xa7voters", b"\x95\x00\xa6voters",
)


def _build_1() -> bytes:
    words = b"".join(msgpack.packb(w, use_bin_type=True) for w in _VOTER_WORDS_1)
    return words + b"".join(_STREAM_FRAGMENTS_1)


#: Dictionary id -> its bytes. Ids are 1-255; a higher id is a newer dictionary.
DICTIONARIES: dict[int, bytes] = {1: _build_1()}

#: The ids this release offers in its HELLO, newest first.
KNOWN_IDS: tuple[int, ...] = tuple(sorted(DICTIONARIES, reverse=True))

#: At most this many ids are read from a peer's HELLO.
MAX_OFFERED = 32


def best_common(ours: tuple[int, ...], theirs: tuple[int, ...]) -> int | None:
    """The highest dictionary id in both lists, or None (frames then go uncompressed)."""
    common = set(ours) & set(theirs) & DICTIONARIES.keys()
    return max(common) if common else None
