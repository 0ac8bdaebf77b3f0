"""Encrypted homes: the store's key and where it comes from (docs/architecture.md §6).

An encrypted home holds ``datakey.json``: a random 32-byte *data key*, the key of the
SQLCipher store (:class:`~meshsync.store.sqlite.SQLiteStore` ``key``), wrapped with
AES-256-GCM under a *wrapping key* that never lives in the home:

* ``"kdf": "scrypt"``: scrypt over the officer's passphrase or PIN (N = 2^15, r = 8,
  p = 1: 32 MiB of memory; salt and parameters in the file), run once per process
  that opens the store (a daemon: once per start);
* ``"kdf": "host"``: 32 bytes the host app hands over through the embedding API
  (:func:`meshsync.host.local.open_node` ``home_key``, ``daemon/embed.py`` ``start``);
  an Android app keeps them in the Android Keystore.

A wrong passphrase or key fails the AES-GCM tag: :class:`WrongKeyError`, never an
SQLite error. The data key is kept in this process only (:func:`provide`), so that
every store the process opens on that home uses it.

Where the passphrase comes from, in order: a key given to :func:`provide`; the
environment (``MESHSYNC_PASSPHRASE``, or ``MESHSYNC_PASSPHRASE_FILE`` naming a file
whose first line is the passphrase); the prompt the CLI installs
(:func:`set_prompt`). Without any, opening the store raises :class:`LockedError`
saying how to give it.

Only light standard modules are imported here; ``hashlib`` and ``cryptography``
(AES-GCM) only when an encrypted home is opened, so a clear home's fast read path
(tests/test_cli_start.py) stays as it is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshsync.host.files import fsync_dir
from meshsync.host.home import STORE_FILE
from meshsync.model.errors import UsageError
from meshsync.model.text import Msg

KEY_FILE = "datakey.json"
FORMAT = "meshsync-datakey/1"
KEY_BYTES = 32
#: scrypt's cost for a passphrase: 2^15 * 128 * 8 bytes = 32 MiB, about 0.4 s on one
#: core of the development machine.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
PASSPHRASE_ENV = "MESHSYNC_PASSPHRASE"  # noqa: S105 - the variable's name
PASSPHRASE_FILE_ENV = "MESHSYNC_PASSPHRASE_FILE"  # noqa: S105
#: Bound into every wrap (AES-GCM associated data).
_AAD = b"meshsync home data key v1"

_unlocked: dict[Path, bytes] = {}
#: The passphrase prompt (set_prompt), at most one.
_prompts: list[Callable[[Path], str]] = []


class LockedError(UsageError):
    """The home is encrypted and no passphrase or key was given."""


class WrongKeyError(UsageError):
    """The passphrase or key given does not open the home."""


def key_path(home: Path) -> Path:
    """Where an encrypted home keeps its wrapped data key."""
    return home / KEY_FILE


def is_encrypted(home: Path) -> bool:
    """Whether the home at ``home`` has an encrypted store (it holds ``datakey.json``)."""
    return key_path(home).exists()


def _scrypt(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    import hashlib  # loads OpenSSL: not on a clear home's read path

    # surrogateescape: a passphrase from the environment holding bytes that are not
    # UTF-8 (os.environ keeps them as lone surrogates) is those very bytes
    return hashlib.scrypt(passphrase.encode("utf-8", "surrogateescape"), salt=salt, n=n, r=r, p=p,
                          maxmem=2 * 128 * n * r + 2**20, dklen=KEY_BYTES)


def _aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def check_passphrase(passphrase: str) -> None:
    """UsageError if ``passphrase`` is too short for a new home (6 characters)."""
    if len(passphrase) < 6:
        raise UsageError(Msg("the passphrase is too short: at least 6 characters"))


def create(home: Path, *, passphrase: str | None = None,
           home_key: bytes | None = None) -> bytes:
    """Make ``home`` (a folder without a store yet) an encrypted home: a new data key,
    wrapped under ``passphrase`` (scrypt) or ``home_key`` (32 bytes from the host app),
    written to ``datakey.json`` (0600). Returns the data key, also kept for this
    process (:func:`provide`).

    Raises :class:`UsageError` if neither or both are given, the passphrase is shorter
    than 6 characters, ``home_key`` is not 32 bytes, or the home is encrypted already
    or has a (clear) store.
    """
    if (passphrase is None) == (home_key is None):
        raise UsageError("give a passphrase or a home key, not both")
    if is_encrypted(home):
        raise UsageError(Msg("%(path)s is encrypted already", path=home))
    if (home / STORE_FILE).exists():
        raise UsageError(Msg("%(path)s already has a store in clear: encrypting an existing "
                             "store is not built; make a new home with --encrypt and "
                             "sync it", path=home))
    import secrets

    doc: dict[str, Any] = {"format": FORMAT}
    if passphrase is not None:
        check_passphrase(passphrase)
        salt = secrets.token_bytes(16)
        doc.update(kdf="scrypt", salt=salt.hex(), n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
        wrapping = _scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    else:
        assert home_key is not None
        _check_home_key(home_key)
        doc["kdf"] = "host"
        wrapping = home_key
    data_key = secrets.token_bytes(KEY_BYTES)
    nonce = secrets.token_bytes(12)
    doc["wrapped"] = (nonce + _aesgcm(wrapping).encrypt(nonce, data_key, _AAD)).hex()
    fd = os.open(key_path(home), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(home)
    provide(home, data_key)
    return data_key


def _check_home_key(home_key: bytes) -> None:
    if not isinstance(home_key, bytes) or len(home_key) != KEY_BYTES:
        raise UsageError(f"a home key is {KEY_BYTES} bytes")


def _read(home: Path) -> dict[str, Any]:
    path = key_path(home)
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(Msg("%(path)s cannot be read: %(error)s", path=path,
                             error=str(exc))) from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UsageError(Msg("%(path)s is not a meshsync data key file", path=path))
    return doc


def unlock(home: Path, *, passphrase: str | None = None,
           home_key: bytes | None = None) -> bytes:
    """The data key of the encrypted ``home``, unwrapped with ``passphrase`` or
    ``home_key`` (whichever its ``datakey.json`` was made with), and kept for this
    process (:func:`provide`).

    Raises :class:`WrongKeyError` if it does not open the home, :class:`LockedError`
    if the home needs the other kind of secret, :class:`UsageError` if the file is bad.
    """
    doc = _read(home)
    try:
        wrapped = bytes.fromhex(doc["wrapped"])
        if doc["kdf"] == "scrypt":
            if passphrase is None:
                raise LockedError(Msg(
                    "%(path)s is encrypted with a passphrase: give it (prompt, or "
                    "MESHSYNC_PASSPHRASE / MESHSYNC_PASSPHRASE_FILE)", path=home))
            wrapping = _scrypt(passphrase, bytes.fromhex(doc["salt"]), int(doc["n"]),
                               int(doc["r"]), int(doc["p"]))
        elif doc["kdf"] == "host":
            if home_key is None:
                raise LockedError(Msg("%(path)s is encrypted with a key the app holds: "
                                      "open it through the app", path=home))
            _check_home_key(home_key)
            wrapping = home_key
        else:
            raise UsageError(f"{key_path(home)}: unknown kdf {doc['kdf']!r}")
    except (KeyError, ValueError, TypeError) as exc:
        raise UsageError(Msg("%(path)s is not a meshsync data key file",
                             path=key_path(home))) from exc
    from cryptography.exceptions import InvalidTag

    try:
        data_key: bytes = _aesgcm(wrapping).decrypt(wrapped[:12], wrapped[12:], _AAD)
    except InvalidTag:
        raise WrongKeyError(Msg("wrong passphrase for %(path)s: nothing was opened or "
                                "changed", path=home)) from None
    provide(home, data_key)
    return data_key


def provide(home: Path, data_key: bytes) -> None:
    """Keep ``data_key`` as the key of ``home``'s store for this process."""
    _unlocked[Path(home).resolve()] = data_key


def forget(home: Path) -> None:
    """Drop the key kept for ``home`` (after a wipe, or when the app locks)."""
    _unlocked.pop(Path(home).resolve(), None)


def set_prompt(prompt: Callable[[Path], str] | None) -> None:
    """Install ``prompt(home) -> passphrase`` (the CLI's, on a terminal), or remove it."""
    _prompts.clear()
    if prompt is not None:
        _prompts.append(prompt)


def passphrase_from_env() -> str | None:
    """The passphrase from ``MESHSYNC_PASSPHRASE`` or the first line of the file named
    by ``MESHSYNC_PASSPHRASE_FILE``; None if neither is set. UsageError if the file
    cannot be read."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    name = os.environ.get(PASSPHRASE_FILE_ENV)
    if not name:
        return None
    return read_passphrase_file(Path(name))


def read_passphrase_file(path: Path) -> str:
    """The first line of ``path`` (without its line end); UsageError if unreadable."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(Msg("cannot read the passphrase file %(path)s: %(error)s",
                             path=path, error=str(exc))) from exc
    return text.splitlines()[0] if text else ""


def store_key(home: Path) -> bytes | None:
    """The key to open ``home``'s store with: None for a clear home; for an encrypted
    one the key kept for this process, else unlocked with the passphrase from the
    environment or the prompt. Raises :class:`LockedError` (how to give it) or
    :class:`WrongKeyError`."""
    if not is_encrypted(home):
        return None
    kept = _unlocked.get(Path(home).resolve())
    if kept is not None:
        return kept
    passphrase = passphrase_from_env()
    if passphrase is None and _prompts and _read(home).get("kdf") == "scrypt":
        passphrase = _prompts[0](home)
    if passphrase is None and _read(home).get("kdf") == "scrypt":
        raise LockedError(Msg(
            "%(path)s is encrypted: give its passphrase (run on a terminal to be asked, "
            "or set MESHSYNC_PASSPHRASE or MESHSYNC_PASSPHRASE_FILE)", path=home))
    return unlock(home, passphrase=passphrase)
