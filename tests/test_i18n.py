"""Indonesian first (issue 15): every message has its Indonesian translation, the
committed .mo files are their .po compiled, one CLI error reads in both languages,
the language is chosen in the documented order, and the status page speaks
Indonesian with Indonesian numbers (docs/architecture.md §9)."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from babel.messages.mofile import write_mo

from meshsync.host import i18n
from meshsync.model.errors import UsageError, ValidationError
from meshsync.model.text import Msg

REPO = Path(__file__).resolve().parent.parent


def _catalogues() -> ModuleType:
    spec = importlib.util.spec_from_file_location("catalogues", REPO / ".ci" / "catalogues.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _fresh_language() -> Iterator[None]:
    """Each test chooses its own language; none leaks into later tests."""
    yield
    i18n.install(i18n.CLI_DEFAULT)
    i18n._state.update(lang=None, explicit=False, home=None)


def test_every_message_of_the_code_has_its_indonesian_translation() -> None:
    # Babel extracts every _(), ngettext(), N_() and Msg() of the source tree
    # (babel.cfg); a new message without a msgstr in id's .po fails here.
    found = _catalogues().problems("id")
    assert found == [], "run `python .ci/catalogues.py update`, translate, compile:\n" + \
        "\n".join(found)


def test_a_new_message_without_translation_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    catalogues = _catalogues()
    extracted = catalogues.extract()
    extracted.add("%(n)d voters waiting to be sent", locations=[("cli/new.py", 1)])
    monkeypatch.setattr(catalogues, "extract", lambda: extracted)
    assert catalogues.problems("id") == ["missing: '%(n)d voters waiting to be sent'"]


@pytest.mark.parametrize("lang", ["id", "en"])
def test_the_committed_mo_is_its_po_compiled(lang: str) -> None:
    catalogues = _catalogues()
    compiled = io.BytesIO()
    write_mo(compiled, catalogues.read(lang))
    mo = catalogues.po_path(lang).with_suffix(".mo")
    assert mo.read_bytes() == compiled.getvalue(), \
        f"{mo} is stale: run `python .ci/catalogues.py compile`"


def _meshsync(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MESHSYNC_LANG", "MESHSYNC_HOME", "LANG", "LC_ALL", "LC_MESSAGES")}
    return subprocess.run(
        [sys.executable, "-c", "from meshsync.cli.main import run; run()", *args],
        capture_output=True, text=True, env={**clean, **env}, check=False)


def test_one_cli_error_in_both_languages(tmp_path: Path) -> None:
    home = str(tmp_path / "nowhere")
    put = ("put", "--home", home, "voters", "v-1", "nama=Yosina")
    indonesian = _meshsync("--lang", "id", *put)
    english = _meshsync("--lang", "en", *put)
    assert indonesian.returncode == english.returncode == 1
    assert indonesian.stderr == (f"meshsync: gagal: tidak ada home meshsync di {home} "
                                 f"(buat dulu: meshsync init --home {home})\n")
    assert english.stderr == (f"meshsync: error: no node home at {home} "
                              f"(run: meshsync init --home {home})\n")


def test_a_usage_error_speaks_the_lang_given_before_it() -> None:
    # click stops at the unknown command before the group's callback runs
    refused = _meshsync("--lang", "id", "bogus")
    assert refused.returncode == 2
    assert refused.stderr.startswith("meshsync: gagal: ") and "(lihat: " in \
        refused.stderr


def test_the_language_follows_the_environment_and_the_home(tmp_path: Path) -> None:
    home = tmp_path / "hp"
    assert _meshsync("init", "--home", str(home), "--partition", "a/b").returncode == 0
    bad = ("put", "--home", str(home), "voters", "v-1")  # no field given
    assert _meshsync(*bad).stderr.startswith("meshsync: error: give at least one")
    assert _meshsync(*bad, LANG="id_ID.UTF-8").stderr.startswith("meshsync: gagal: tulis")
    with (home / "config.toml").open("a") as f:
        f.write('lang = "id"\n')
    assert _meshsync(*bad).stderr.startswith("meshsync: gagal: ")
    assert _meshsync(*bad, MESHSYNC_LANG="en").stderr.startswith("meshsync: error: ")
    assert _meshsync("--lang", "en", *bad).stderr.startswith("meshsync: error: ")
    refused = _meshsync(*bad, MESHSYNC_LANG="fr")
    assert refused.returncode == 1 and "MESHSYNC_LANG: unknown language 'fr'" in refused.stderr


def test_the_order_of_choice_is_option_environment_config_locale_default() -> None:
    everything = {"MESHSYNC_LANG": "en", "LANG": "id_ID.UTF-8"}
    assert i18n.choose("id", everything, "en") == "id"  # --lang first
    assert i18n.choose(None, everything, "id") == "en"  # then $MESHSYNC_LANG
    assert i18n.choose(None, {"LANG": "en_US.UTF-8"}, "id") == "id"  # then config lang
    assert i18n.choose(None, {"LANG": "id_ID.UTF-8"}) == "id"  # then the locale
    assert i18n.choose(None, {"LC_ALL": "C", "LANG": "id_ID.UTF-8"}) == "en"  # LC_ALL wins
    assert i18n.choose(None, {"LC_MESSAGES": "in_ID", "LANG": "en_US"}) == "id"
    assert i18n.choose(None, {}) == "en"  # the command line's default
    assert i18n.choose(None, {}, default=i18n.PAGE_DEFAULT) == "id"  # the pages'
    with pytest.raises(UsageError, match="--lang"):
        i18n.choose("fr", {})


def test_core_messages_stay_english_until_shown() -> None:
    message = Msg("no node home at %(path)s (run: meshsync init --home %(path)s)", path="/x")
    assert message == "no node home at /x (run: meshsync init --home /x)"
    assert str(UsageError(message)) == message  # logs and tests read English
    assert i18n.localize(message, "id").startswith("tidak ada home meshsync di /x")
    assert i18n.localize("plain text", "id") == "plain text"


def test_a_coklit_validator_refusal_reads_in_indonesian() -> None:
    from meshsync.coklit.schema import VoterValidator

    problems = VoterValidator()("v-1", {"nama": "Yosina 2", "coklit": "TMS", "tms": None},
                                partial=True)
    error = ValidationError("voters", problems)
    shown = i18n.describe(error, "id")
    assert shown.startswith("voters: nama: berisi '2' (angka): nama hanya boleh berisi huruf")
    assert "tms: coklit TMS (tidak memenuhi syarat) perlu alasan TMS" in shown
    assert i18n.describe(error, "en") == str(error)


def test_indonesian_numbers_dates_and_times() -> None:
    assert i18n.number(16417, "id") == "16.417"
    assert i18n.number(1.5, "id") == "1,5"
    assert i18n.ago(185, "id") == "3 menit lalu"
    ms = 1796634720000  # 2026-12-07 08:32 UTC
    assert i18n.day(ms, "id").endswith("Des 2026")
    assert ":" not in i18n.clock_time(ms, "id")  # 10.32, never 10:32


def test_the_status_page_speaks_indonesian_by_default(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    from meshsync.daemon.status_page import render_status

    monkeypatch.delenv("MESHSYNC_LANG", raising=False)
    status = {"device_id": "A" * 52, "role": "gateway", "mesh": "jila", "diagnosis": "ok",
              "changes": 16417, "conflicts": 2, "clock_warnings": [], "uplink": None}
    progress = {"village": {"diloa": {"records": 16417, "status": {"MS": 1200},
                                      "conflicts": 0}}, "tps": {}}
    page = render_status(status, [], progress)
    assert '<html lang="id">' in page and "Perangkat meshsync AAAA" in page
    assert ">lancar</b>" in page and "Perubahan tersimpan: 16.417" in page
    assert "MS 1.200" in page and "belum ada perangkat di sekitar" in page
    english = render_status(status, [], progress, lang="en")
    assert "meshsync device AAAA" in english and "Changes held: 16,417" in english
    home = tmp_path / "ppk"
    home.mkdir()
    (home / "config.toml").write_text('lang = "en"\n')
    i18n.use_home(home)  # the daemon's home: its pages follow its lang
    assert '<html lang="en">' in render_status(status, [], progress)
    monkeypatch.setenv("MESHSYNC_LANG", "id")
    assert '<html lang="id">' in render_status(status, [], progress)


def test_the_catalogues_ship_as_package_data() -> None:
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = {p for pattern in config["package-data"]["meshsync"]
               for p in (REPO / "meshsync").glob(pattern)}
    for lang in ("id", "en"):
        for suffix in (".po", ".mo"):
            path = REPO / "meshsync" / "locale" / lang / "LC_MESSAGES" / f"meshsync{suffix}"
            assert path in shipped, path
