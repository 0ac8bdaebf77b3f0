"""The node home: one directory holding everything a device owns.

Layout (all paths relative to the home)::

    device.key     Ed25519 private key, PKCS#8 PEM, mode 0600
    device.csr     certificate signing request for the authority (trust)
    device.crt     this device's certificate and its chain, PEM (after enrolment)
    config.toml    settings (``partition`` = default partition for local edits, ...)
    store.sqlite   the SQLite store (WAL mode)

The home is chosen by ``--home``, else ``$MESHSYNC_HOME``, else the platform's
user data directory (platformdirs).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import platformdirs

from meshsync.errors import NotFoundError, UsageError
from meshsync.identity import DeviceKey

DEFAULT_PARTITION = "local"
KEY_FILE = "device.key"
CSR_FILE = "device.csr"
CERT_FILE = "device.crt"
CONFIG_FILE = "config.toml"
STORE_FILE = "store.sqlite"


def default_home() -> Path:
    """``$MESHSYNC_HOME`` if set, else the platform user data dir for meshsync."""
    env = os.environ.get("MESHSYNC_HOME")
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("meshsync", appauthor=False))


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never briefly world-readable) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


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

    @classmethod
    def create(cls, path: Path, *, partition: str | None = None) -> Home:
        """Create a new home with a fresh Ed25519 key.

        Raises :class:`UsageError` if ``path`` already holds a device key.
        """
        home = cls(path)
        if home.key_path.exists():
            raise UsageError(f"{path} is already a node home (device.key exists)")
        path.mkdir(parents=True, exist_ok=True)
        _write_private(home.key_path, DeviceKey.generate().to_pem())
        home.write_config({"partition": partition or DEFAULT_PARTITION})
        return home

    @classmethod
    def open(cls, path: Path) -> Home:
        """Open an existing home; raises :class:`NotFoundError` naming the path if absent."""
        home = cls(path)
        if not home.key_path.exists():
            raise NotFoundError(f"no node home at {path} (run: meshsync init --home {path})")
        return home

    def load_key(self) -> DeviceKey:
        """Read the device key; refuses a key file readable by group or others."""
        mode = self.key_path.stat().st_mode & 0o077
        if mode:
            raise UsageError(f"{self.key_path} is readable by others (chmod 600 it)")
        return DeviceKey.from_pem(self.key_path.read_bytes())

    def config(self) -> dict[str, Any]:
        """Parsed ``config.toml`` (empty dict if missing); UsageError on bad TOML."""
        if not self.config_path.exists():
            return {}
        try:
            return tomllib.loads(self.config_path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{self.config_path}: {exc}") from exc

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
