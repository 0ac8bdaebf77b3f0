"""The coded values of a voter record: coklit result, TMS reasons, disability kinds.

Sources: PKPU 7/2022 (Penyusunan Daftar Pemilih, Pemilu 2024) and its Sidalih
numbering of TMS categories; the older KETERANGAN codes of Model A.B-KWK (Pilkada
2018, PKPU 2/2017) for the two reasons PKPU 7/2022 folds elsewhere; UU 7/2017 art.
198 (who may vote); UU 8/2016 art. 4 (kinds of disability).
"""

from __future__ import annotations

#: coklit result -> meaning. No result is "belum dicoklit" (not yet checked). In the
#: voter list's KETERANGAN column ``MS`` is ``MS``, ``baru`` is ``B``, ``ubah`` is
#: ``U``, ``TMS`` is the reason's code (see :data:`TMS_REASONS`) and blank is no result.
STATUSES: dict[str, str] = {
    "MS": "memenuhi syarat: checked, eligible",
    "TMS": "tidak memenuhi syarat: not eligible (with a reason)",
    "baru": "pemilih baru: new voter",
    "ubah": "perubahan data: data changed",
}
ELIGIBLE = ("MS", "baru", "ubah")

#: TMS reason -> (KETERANGAN code, Indonesian label, English meaning).
#: Codes 1-8 are the TMS categories of PKPU 7/2022 as numbered in Sidalih for the 2024
#: elections. 9 and 10 are the Model A.B-KWK codes of 2018, still grounds for refusal
#: under UU 7/2017 art. 198 (voting right revoked by a court; not a resident or not a
#: citizen). The 2018 code 8 "hilang ingatan" (mental illness) was dropped after
#: Constitutional Court ruling 135/PUU-XIII/2015 and is not accepted.
TMS_REASONS: dict[str, tuple[int, str, str]] = {
    "meninggal": (1, "meninggal dunia", "died"),
    "ganda": (2, "ganda", "registered twice (duplicate)"),
    "di_bawah_umur": (3, "di bawah umur", "under 17 on election day and never married"),
    "pindah_domisili": (4, "pindah domisili", "moved out of the village"),
    "tidak_dikenal": (5, "tidak dikenal", "unknown person: nobody knows them here"),
    "tni": (6, "TNI", "serving soldier (Tentara Nasional Indonesia)"),
    "polri": (7, "Polri", "serving police officer (Kepolisian Negara RI)"),
    "salah_tps": (8, "salah penempatan TPS", "listed at the wrong TPS of this village"),
    "hak_pilih_dicabut": (9, "hak pilih dicabut", "voting right revoked by a court"),
    "bukan_penduduk": (10, "bukan penduduk", "not a resident here, or not a citizen"),
}

#: Disability kinds recorded at coklit (the six "ragam disabilitas"):
#: value -> (code in the DISABILITAS column, Indonesian label).
DISABILITAS: dict[str, tuple[int, str]] = {
    "fisik": (1, "disabilitas fisik"),
    "intelektual": (2, "disabilitas intelektual"),
    "mental": (3, "disabilitas mental"),
    "sensorik_wicara": (4, "disabilitas sensorik wicara"),
    "sensorik_rungu": (5, "disabilitas sensorik rungu"),
    "sensorik_netra": (6, "disabilitas sensorik netra"),
}

STATUS_KAWIN = {"B": "belum kawin", "S": "sudah kawin", "P": "pernah kawin"}
JENIS_KELAMIN = {"L": "laki-laki", "P": "perempuan"}

APOSTROPHES = "'\u2019\u02bc\u2018\u0060\u00b4\u02b9\u2032\uff07"
"""What different keyboards and autocorrect type for an apostrophe: U+0027, U+2019,
U+02BC, U+2018, U+0060, U+00B4, U+02B9, U+2032, U+FF07. All are valid in names."""
