"""The node home: one directory holding everything a device owns.

Layout (all paths relative to the home)::

    device.key     Ed25519 private key, PKCS#8 PEM, mode 0600
    device.csr     certificate signing request for the authority (trust)
    device.crt     this device's certificate and its chain, PEM (after enrolment)
    config.toml    settings (``partition`` = default partition for local edits, ...)
    store.sqlite   the SQLite store (WAL mode)
    datakey.json   in an encrypted home: the store's data key, wrapped under a passphrase
                   or the host app's key (:mod:`meshsync.host.atrest`), mode 0600
    next.key       a new Ed25519 key waiting for its certificate (``meshsync rekey``), 0600
    next.csr       the certificate signing request for next.key
    retired-keys/  (0700) earlier device keys, ``<device id>.key`` (0600), kept after a
                   rotation: the changes they signed stay in the store, unchanged
    restored-from.crt  in a home made by ``meshsync restore``: the old device's
                   certificate (:mod:`meshsync.host.backup`; no device.crt until enrolled)

**Key rotation** (:meth:`Home.make_next_key`, :meth:`Home.promote_next_key`): the
device keeps signing with ``device.key`` until the certificate for ``next.key`` is
enrolled; then ``next.key`` becomes ``device.key`` and the old key moves to
``retired-keys/``. The device's feeds are keyed by author, so its next change starts
a new feed (seq 1) under the new key; the HLC is the store's, so it goes on rising.

The home is chosen by ``--home``, else ``$MESHSYNC_HOME``, else the platform's
user data directory (platformdirs).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from meshsync.host.files import fsync_dir, replace_file, write_private
from meshsync.model.errors import NotFoundError, UsageError
from meshsync.model.identity import DeviceKey, check_key_pem
from meshsync.model.text import Msg

DEFAULT_PARTITION = "local"
KEY_FILE = "device.key"
CSR_FILE = "device.csr"
CERT_FILE = "device.crt"
CONFIG_FILE = "config.toml"
STORE_FILE = "store.sqlite"
NEXT_KEY_FILE = "next.key"
NEXT_CSR_FILE = "next.csr"
RETIRED_DIR = "retired-keys"

#: Every key ``config.toml`` may hold: those the node reads (``partition``, ``schema``,
#: ``storage_reserve_mb``, ``mesh``, ``share``, ``compress``, ``lang``) and the daemon's
#: (meshsync.daemon.config; tests/test_rough_edges.py keeps the two lists equal).
#: Any other key is refused by name, by every command (a misspelled ``partiton`` must not
#: quietly send edits to partition ``local``).
CONFIG_KEYS = frozenset({
    "partition", "schema", "storage_reserve_mb", "mesh", "share", "listen", "api",
    "discovery", "static_peers", "interfaces", "beacon_port", "anti_entropy_s",
    "beacon_interval_s", "backoff_min_s", "backoff_max_s", "uplink", "lang",
    "max_handshakes", "max_handshakes_per_source", "refusal_log_interval_s",
    "kpu_idle_days", "compress",
})


#: The record a wipe leaves in a home (meshsync.host.wipe); such a home is never opened
#: again (:meth:`Home.check_not_wiped`).
WIPED_FILE = "wiped.json"


def check_config_keys(values: dict[str, Any], source: Path | str) -> None:
    """Raise :class:`~meshsync.model.errors.UsageError` naming the first key of
    ``values`` (read from ``source``) that is not in :data:`CONFIG_KEYS`."""
    unknown = sorted(set(values) - CONFIG_KEYS)
    if unknown:
        raise UsageError(f"{source}: unknown key {unknown[0]!r}; known keys: "
                         f"{', '.join(sorted(CONFIG_KEYS))}")


def default_home() -> Path:
    """``$MESHSYNC_HOME`` if set, else the platform user data dir for meshsync."""
    env = os.environ.get("MESHSYNC_HOME")
    if env:
        return Path(env)
    import platformdirs  # slow to import; not needed with --home or MESHSYNC_HOME

    return Path(platformdirs.user_data_dir("meshsync", appauthor=False))


def _read_private(path: Path) -> bytes:
    """The bytes of a key file; refuses one readable by group or others."""
    if path.stat().st_mode & 0o077:
        raise UsageError(f"{path} is readable by others (chmod 600 it)")
    return path.read_bytes()


def _load_private(path: Path) -> DeviceKey:
    """Read an Ed25519 key file; refuses one readable by group or others."""
    return DeviceKey.from_pem(_read_private(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise UsageError(f"cannot write {type(value).__name__} to config.toml")


class Home:
    """A node home directory. Use :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def key_path(self) -> Path:
        """Path of the device's private key file."""
        return self.path / KEY_FILE

    @property
    def csr_path(self) -> Path:
        """Path of the certificate signing request written by ``init``."""
        return self.path / CSR_FILE

    @property
    def cert_path(self) -> Path:
        """Path of the installed device certificate chain (PEM)."""
        return self.path / CERT_FILE

    @property
    def config_path(self) -> Path:
        """Path of ``config.toml``."""
        return self.path / CONFIG_FILE

    @property
    def store_path(self) -> Path:
        """Path of the SQLite store."""
        return self.path / STORE_FILE

    @property
    def next_key_path(self) -> Path:
        """Path of the key made by ``meshsync rekey``, waiting for its certificate."""
        return self.path / NEXT_KEY_FILE

    @property
    def next_csr_path(self) -> Path:
        """Path of the certificate signing request for :attr:`next_key_path`."""
        return self.path / NEXT_CSR_FILE

    def retired_key_path(self, device_id: str) -> Path:
        """Where the retired key of ``device_id`` (a printable device id) is kept."""
        return self.path / RETIRED_DIR / f"{device_id}.key"

    @classmethod
    def create(cls, path: Path, *, partition: str | None = None) -> Home:
        """Create a new home with a fresh Ed25519 key.

        Raises :class:`UsageError` if ``path`` already holds a device key.
        """
        home = cls(path)
        if home.key_path.exists():
            raise UsageError(Msg("%(path)s is already a node home (device.key exists)", path=path))
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)  # the home holds keys and voters' data: its owner's only
        write_private(home.key_path, DeviceKey.generate().to_pem())
        home.write_config({"partition": partition or DEFAULT_PARTITION})
        return home

    @classmethod
    def open(cls, path: Path) -> Home:
        """Open an existing home; raises :class:`NotFoundError` naming the path if absent."""
        home = cls(path)
        if not home.key_path.exists():
            raise NotFoundError(Msg("no node home at %(path)s (run: meshsync init --home %(path)s)",
                                    path=path))
        return home

    def load_key(self) -> DeviceKey:
        """Read the device key; refuses a key file readable by group or others."""
        return _load_private(self.key_path)

    def check_not_wiped(self) -> None:
        """Refuse a home that was wiped (``meshsync wipe`` or its own revocation left
        :data:`WIPED_FILE`): its store must never be made again, for a new store would
        sign its feed from seq 1 again, a fork of what the device already sent.

        Raises :class:`UsageError` naming the wipe's reason and what to do instead."""
        path = self.path / WIPED_FILE
        if path.exists():
            raise UsageError(Msg(
                "%(home)s was wiped (%(file)s): it holds no voter data and cannot be used "
                "again; make a new home with meshsync init and enroll it",
                home=self.path, file=WIPED_FILE))

    def check_key(self) -> None:
        """Refuse the device key file as :meth:`load_key` does (UsageError: readable by
        group or others, not an Ed25519 key), without loading the key: the read-only
        open (:mod:`meshsync.host.reading`) neither signs nor needs ``cryptography``."""
        check_key_pem(_read_private(self.key_path))

    def load_next_key(self) -> DeviceKey | None:
        """The key waiting for its certificate (``next.key``), or None if there is none.

        Raises :class:`UsageError` if the file is readable by others or not an Ed25519 key.
        """
        if not self.next_key_path.exists():
            return None
        return _load_private(self.next_key_path)

    def make_next_key(self) -> tuple[DeviceKey, bool]:
        """``(next key, created)``: the waiting key, made now (mode 0600) unless one is
        already waiting. ``device.key`` is not touched."""
        existing = self.load_next_key()
        if existing is not None:
            return existing, False
        key = DeviceKey.generate()
        write_private(self.next_key_path, key.to_pem())
        return key, True

    def promote_next_key(self, cert_chain_pem: bytes) -> Path:
        """Make ``next.key`` the device key, with ``cert_chain_pem`` (PEM, the new
        device certificate first) as ``device.crt``; returns where the old key went.

        In order: the old key is copied to ``retired-keys/<old id>.key`` (0600, in a
        0700 folder; an existing copy is kept), ``next.key`` is renamed over
        ``device.key``, ``device.crt`` is replaced, ``next.csr`` becomes
        ``device.csr``. Each step is atomic; if the process stops between the second
        and third, key and certificate differ until ``meshsync enroll`` of the same
        certificate is run again (it then finds the certificate is for the device key).
        The caller checks that the certificate is for the next key. Raises
        :class:`UsageError` if no key is waiting.
        """
        new = self.load_next_key()
        if new is None:
            raise UsageError(f"no new key is waiting in {self.path} (run: meshsync rekey)")
        old = self.load_key()
        retired = self.retired_key_path(old.device_id)
        retired.parent.mkdir(mode=0o700, exist_ok=True)
        if not retired.exists():
            write_private(retired, old.to_pem())
        elif _load_private(retired).public_key != old.public_key:
            raise UsageError(f"{retired} holds another key than {self.key_path}")
        self.next_key_path.replace(self.key_path)
        replace_file(self.cert_path, cert_chain_pem)
        if self.next_csr_path.exists():
            self.next_csr_path.replace(self.csr_path)
        fsync_dir(self.path)
        return retired

    def retired_keys(self) -> list[DeviceKey]:
        """Every key kept in ``retired-keys/`` (oldest rotation first by file time)."""
        folder = self.path / RETIRED_DIR
        if not folder.is_dir():
            return []
        files = sorted(folder.glob("*.key"), key=lambda p: p.stat().st_mtime_ns)
        return [_load_private(p) for p in files]

    def config(self) -> dict[str, Any]:
        """Parsed ``config.toml`` (empty dict if missing); UsageError on bad TOML or on
        a key not in :data:`CONFIG_KEYS`."""
        if not self.config_path.exists():
            return {}
        try:
            values = tomllib.loads(self.config_path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{self.config_path}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"{self.config_path}: not UTF-8 text (byte {exc.start}); "
                             "TOML files are UTF-8") from exc
        check_config_keys(values, self.config_path)
        return values

    def write_config(self, values: dict[str, Any]) -> None:
        """Write flat ``key = value`` settings to ``config.toml`` atomically."""
        lines = [f"{k} = {_toml_value(v)}" for k, v in sorted(values.items())]
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", "utf-8")
        tmp.replace(self.config_path)

    def default_partition(self) -> str:
        """The partition local edits go to when none is given."""
        value = self.config().get("partition", DEFAULT_PARTITION)
        if not isinstance(value, str) or not value:
            raise UsageError(f"{self.config_path}: 'partition' must be a non-empty string")
        return value
