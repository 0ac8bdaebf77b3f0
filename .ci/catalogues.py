"""Keep the gettext catalogues (domain ``meshsync``) in step with the code, with Babel.

Usage (from anywhere)::

    python .ci/catalogues.py update    # extract (babel.cfg) and merge into every .po
    python .ci/catalogues.py compile   # write each .mo from its .po (commit both)
    python .ci/catalogues.py check     # exit 1 listing untranslated/fuzzy/stale messages

The ``.po`` files are the source people edit; the ``.mo`` files are committed beside
them so an installed meshsync (and an editable checkout) reads them with the standard
library's gettext; tests/test_i18n.py fails if a .mo differs from its .po, or if a
message of the code has no Indonesian translation.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

REPO = Path(__file__).resolve().parent.parent
LOCALE = REPO / "meshsync" / "locale"
DOMAIN = "meshsync"
LANGUAGES = ("id", "en")
#: gettext's own names, and the core's no-I/O markers (meshsync.model.text).
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None, "Msg": None}


def po_path(lang: str) -> Path:
    """The ``.po`` file of ``lang``."""
    return LOCALE / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def extract() -> Catalog:
    """Every message the code marks, as a template catalogue."""
    with (REPO / "babel.cfg").open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    template = Catalog(project="meshsync", domain=DOMAIN)
    for filename, lineno, message, comments, context in extract_from_dir(
            str(REPO), method_map, options_map, keywords=KEYWORDS, comment_tags=("i18n:",)):
        template.add(message, None, [(filename, lineno)], auto_comments=comments,
                     context=context)
    for filename, text in command_help():
        template.add(text, None, [(filename, 0)], auto_comments=["click help"])
    from meshsync.cli.click_texts import CLICK_PLURALS

    for singular, plural in CLICK_PLURALS:
        template.add((singular, plural), None, [("cli/click_texts.py", 0)],
                     auto_comments=["click's own words, plural"])
    return template


def command_help() -> list[tuple[str, str]]:
    """The command line's help texts (docstrings and ``help=``), read from the command
    tree as click shows them (cli/help_i18n.py translates them by these keys)."""
    from meshsync.cli import help_i18n
    from meshsync.cli.main import COMMANDS, main

    main.load_all()  # type: ignore[attr-defined]
    found = [("cli/main.py", short) for _, short in COMMANDS.values()]
    return found + list(help_i18n.help_texts(main))


def read(lang: str) -> Catalog:
    """The catalogue of ``lang`` as it is on disk."""
    with po_path(lang).open("rb") as f:
        return read_po(f, locale=lang, domain=DOMAIN)


def update() -> None:
    """Merge the extracted messages into each language's ``.po`` (new ones empty)."""
    template = extract()
    for lang in LANGUAGES:
        path = po_path(lang)
        catalog = read(lang) if path.exists() else Catalog(locale=lang, domain=DOMAIN,
                                                           project="meshsync")
        created = catalog.creation_date  # kept: a header that never changes merges cleanly
        catalog.update(template, no_fuzzy_matching=True)
        catalog.creation_date = created
        catalog.obsolete.clear()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            write_po(f, catalog, width=88, include_lineno=False)  # fewer merge conflicts


def compile_all() -> None:
    """Write each ``.mo`` from its ``.po``."""
    for lang in LANGUAGES:
        with po_path(lang).with_suffix(".mo").open("wb") as f:
            write_mo(f, read(lang))


def problems(lang: str = "id") -> list[str]:
    """Messages of the code missing, untranslated or fuzzy in ``lang``'s catalogue."""
    catalog = read(lang)
    found = []
    for message in extract():
        if not message.id:
            continue
        held = catalog.get(message.id, context=message.context)
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        if held is None:
            found.append(f"missing: {ids[0]!r}")
        elif held.fuzzy:
            found.append(f"fuzzy: {ids[0]!r}")
        elif not all(held.string if isinstance(held.string, tuple) else (held.string,)):
            found.append(f"untranslated: {ids[0]!r}")
        elif (_fields(held.string) - _fields(ids) if len(ids) > 1  # one form may take
              else _fields(ids[0]) ^ _fields(held.string)):      # either's placeholders
            found.append(f"placeholders differ: {ids[0]!r}")
    found += [f"format: {m.id!r}: {e}" for m, errors in catalog.check() for e in errors]
    return found


def _fields(text: object) -> set[str]:
    """The ``{name}`` placeholders of a ``str.format`` template (Babel checks ``%(name)s``)."""
    strings = text if isinstance(text, tuple) else (text,)
    return {f for s in strings for f in re.findall(r"\{(\w+)\}", str(s))}


def main(argv: list[str]) -> int:
    """The command line of this script."""
    if argv == ["update"]:
        update()
    elif argv == ["compile"]:
        compile_all()
    elif argv == ["check"]:
        found = problems()
        print("\n".join(found) or "every message has its Indonesian translation")
        return 1 if found else 0
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
