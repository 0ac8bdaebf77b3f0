"""The command line's help and click's own words follow the reader's language
(cli/help_i18n.py); English stays as click writes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MESHSYNC = str(Path(sys.executable).parent / "meshsync")  # the console script


def _meshsync(*args: str, lang: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MESHSYNC_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    if lang:
        env["MESHSYNC_LANG"] = lang
    return subprocess.run([MESHSYNC, *args],
                          capture_output=True, text=True, env=env, check=False)


def test_top_level_help_in_indonesian_from_the_environment() -> None:
    out = _meshsync("--help", lang="id").stdout
    assert out.startswith("Cara pakai: meshsync"), out
    assert "Perintah:" in out and "Opsi:" in out
    assert "Tampilkan bantuan ini lalu keluar." in out  # click's own --help option
    assert "Cadangkan home SQLite" in out  # a short help from the lazy command table
    assert "Show this message" not in out and "Commands:" not in out


def test_command_help_in_indonesian_with_lang_option() -> None:
    out = _meshsync("--lang", "id", "coklit", "import", "--help").stdout
    assert "Impor daftar pemilih CSV" in out, out
    assert "Baris per perubahan bertanda tangan." in out  # an option's help=
    assert "Folder home node" in out


def test_english_help_is_unchanged() -> None:
    out = _meshsync("get", "--help").stdout
    assert out.startswith("Usage: meshsync get"), out
    assert "Show one record, with any conflicts." in out
    assert "Show this message and exit." in out


def test_usage_error_in_both_languages() -> None:
    indonesian = _meshsync("--lang", "id", "get")
    assert indonesian.returncode == 2
    assert indonesian.stderr.strip() == (
        "meshsync: gagal: Argumen belum diisi 'COLLECTION'. (lihat: meshsync get --help)")
    english = _meshsync("--lang", "en", "get")
    assert "Missing argument 'COLLECTION'" in english.stderr, english.stderr
    unknown = _meshsync("--lang", "id", "nosuch")
    assert "Tidak ada perintah 'nosuch'." in unknown.stderr, unknown.stderr


def test_clicks_plural_messages_and_required_mark_in_indonesian() -> None:
    missing = _meshsync("--lang", "id", "get", "--home")
    assert "Opsi '--home' memerlukan nilai." in missing.stderr, missing.stderr
    extra = _meshsync("--lang", "id", "get", "a", "b", "c")
    assert "Ada argumen yang tidak dikenal: (c)" in extra.stderr, extra.stderr
    typo = _meshsync("--lang", "id", "get", "--hom", "x", "a", "b")
    assert "Mungkin maksudnya '--home'?" in typo.stderr, typo.stderr
    assert "[wajib]" in _meshsync("--lang", "id", "coklit", "generate", "--help").stdout
