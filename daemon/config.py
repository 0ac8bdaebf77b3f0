"""Daemon configuration: ``config.toml`` in the home, overridden by flags.

Keys (all optional; defaults in :data:`DEFAULTS`)::

    partition = "mimika/jila/diloa/tps-003"   # default partition for local edits
    mesh = "mimika-jila"                      # only peers of the same mesh are dialled
    share = "mimika/jila"                     # partition prefix this node carries
    listen = "0.0.0.0:7420"                   # sync listener HOST:PORT
    api = "127.0.0.1:7421"                    # local HTTP API (always loopback)
    discovery = ["mdns", "broadcast", "gateway", "static"]
    static_peers = ["192.168.43.1:7420"]
    interfaces = []                           # pin mDNS to these addresses (empty: all)
    beacon_port = 7422
    anti_entropy_s = 60.0                     # sync every known peer at least this often
    beacon_interval_s = 5.0
    backoff_min_s = 2.0                       # first retry delay after a failed sync
    backoff_max_s = 300.0
    uplink = ["central.example:7420"]         # gateway role: where central is (issue 6)
    storage_reserve_mb = 64                   # free MiB kept for local edits: received
                                              # changes are refused below it (io_local)
    max_handshakes = 256                      # unauthenticated sync connections held;
    max_handshakes_per_source = 32            # of those, from one IP (oldest idle shed)
    refusal_log_interval_s = 60.0             # refusals logged as counts per interval
    kpu_idle_days = 3                         # central's KPU page: a TPS with no coklit
                                              # result for this many days is highlighted
    compress = true                           # offer compressed sync frames (protocol 4)

An invalid value is refused with :class:`~meshsync.model.errors.UsageError` naming the key
and what is allowed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshsync.host.home import Home, check_config_keys
from meshsync.model.errors import UsageError
from meshsync.net.admission import (
    DEFAULT_MAX_HANDSHAKES,
    DEFAULT_MAX_PER_SOURCE,
    DEFAULT_REFUSAL_LOG_INTERVAL_S,
    ConnectionLimits,
)

DISCOVERY_METHODS = ("mdns", "broadcast", "gateway", "static")
#: What discovery adverts accept as a mesh id (meshsync.net.discovery.model), so a
#: mesh the daemon starts with can always be advertised.
MESH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,62}")

#: Keys of config.toml read by the node itself, not the daemon (meshsync.host.home, io_local).
HOME_KEYS = {"partition", "schema", "storage_reserve_mb", "lang",
             "compress"}  # compress: meshsync.net.setup.session_config

DEFAULTS: dict[str, Any] = {
    "mesh": "default",
    "listen": "0.0.0.0:7420",
    "api": "127.0.0.1:7421",
    "discovery": list(DISCOVERY_METHODS),
    "static_peers": [],
    "interfaces": [],
    "beacon_port": 7422,
    "anti_entropy_s": 60.0,
    "beacon_interval_s": 5.0,
    "backoff_min_s": 2.0,
    "backoff_max_s": 300.0,
    "uplink": [],
    "max_handshakes": DEFAULT_MAX_HANDSHAKES,
    "max_handshakes_per_source": DEFAULT_MAX_PER_SOURCE,
    "refusal_log_interval_s": DEFAULT_REFUSAL_LOG_INTERVAL_S,
    "kpu_idle_days": 3,
}


def parse_hostport(text: Any, key: str, low: int = 0) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); UsageError naming ``key``.

    ``low`` is the lowest port allowed: 0 (the kernel picks) only makes sense for an
    address this node listens on, never for one it dials.
    """
    if not isinstance(text, str):
        raise UsageError(f"config {key}: expected \"HOST:PORT\", got {text!r}")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not low <= int(port) <= 65535:
        raise UsageError(f"config {key}: expected HOST:PORT with a port {low}-65535, "
                         f"got {text!r}")
    return host.strip("[]"), int(port)


def _listen(values: dict[str, Any]) -> tuple[str, int]:
    # An IP literal, so that starting never resolves a name (DNS) on the network.
    host, port = parse_hostport(values["listen"], "listen")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise UsageError(f"config listen: expected an IP address of this device "
                             f"(0.0.0.0, ::, 127.0.0.1, ...), got {host!r}") from None
    return host, port


@dataclass(frozen=True)
class DaemonConfig:
    """Validated daemon settings. Times in seconds."""

    mesh: str
    listen: tuple[str, int]
    api: tuple[str, int]
    discovery: tuple[str, ...]
    static_peers: tuple[tuple[str, int], ...]
    interfaces: tuple[str, ...]
    beacon_port: int
    anti_entropy_s: float
    beacon_interval_s: float
    backoff_min_s: float
    backoff_max_s: float
    uplink: tuple[tuple[str, int], ...]
    share: str | None = None
    max_handshakes: int = DEFAULT_MAX_HANDSHAKES
    max_handshakes_per_source: int = DEFAULT_MAX_PER_SOURCE
    refusal_log_interval_s: float = DEFAULT_REFUSAL_LOG_INTERVAL_S
    kpu_idle_days: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    def limits(self) -> ConnectionLimits:
        """The caps on unauthenticated sync connections (meshsync.net.admission)."""
        return ConnectionLimits(self.max_handshakes, self.max_handshakes_per_source,
                                self.refusal_log_interval_s)


def _number(values: dict[str, Any], key: str, low: float, high: float) -> float:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not low <= value <= high:
        raise UsageError(f"config {key}: expected a number of seconds from {low} to {high}, "
                         f"got {value!r}")
    return float(value)


def _count(values: dict[str, Any], key: str, low: int, high: int) -> int:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"config {key}: expected a whole number from {low} to {high}, "
                         f"got {value!r}")
    return value


def _string_list(values: dict[str, Any], key: str) -> list[str]:
    value = values[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"config {key}: expected a list of strings, got {value!r}")
    return value


def _api(values: dict[str, Any]) -> tuple[str, int]:
    host, port = parse_hostport(values["api"], "api")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise UsageError(f"config api: the local API only listens on loopback "
                         f"(127.0.0.1 or ::1), got {host!r}")
    return host, port


def _is_partition(text: str) -> bool:
    from meshsync.model.change import check_partition

    try:
        check_partition(text)
    except UsageError:
        return False
    return True


def validate(values: dict[str, Any], source: Path | str = "config") -> DaemonConfig:
    """Check merged settings (read from ``source``); raises UsageError naming the first
    bad key. The known keys are the host layer's (:data:`meshsync.host.home.CONFIG_KEYS`)."""
    check_config_keys(values, source)
    mesh = values["mesh"]
    if not isinstance(mesh, str) or not MESH_RE.fullmatch(mesh):
        raise UsageError(f"config mesh: expected a name of 1-63 letters, digits or ._:/- "
                         f"(starting with a letter or digit), got {mesh!r}")
    methods = _string_list(values, "discovery")
    bad = [m for m in methods if m not in DISCOVERY_METHODS]
    if bad:
        raise UsageError(f"config discovery: unknown method {bad[0]!r}; allowed: "
                         f"{', '.join(DISCOVERY_METHODS)}")
    beacon_port = values["beacon_port"]
    if isinstance(beacon_port, bool) or not isinstance(beacon_port, int) or \
            not 1 <= beacon_port <= 65535:
        raise UsageError(f"config beacon_port: expected a port 1-65535, got {beacon_port!r}")
    share = values.get("share")
    if share is not None and (not isinstance(share, str) or (share and not _is_partition(share))):
        raise UsageError(f"config share: expected a partition prefix like mimika/jila "
                         f"(or \"\" for everything), got {share!r}")
    low, high = _number(values, "backoff_min_s", 0.1, 3600), \
        _number(values, "backoff_max_s", 0.1, 86400)
    if low > high:
        raise UsageError(f"config backoff_min_s: must not exceed backoff_max_s "
                         f"(got {low:g} > {high:g})")
    return DaemonConfig(
        mesh=mesh,
        listen=_listen(values),
        api=_api(values),
        discovery=tuple(methods),
        static_peers=tuple(parse_hostport(p, "static_peers", low=1)
                           for p in _string_list(values, "static_peers")),
        interfaces=tuple(_string_list(values, "interfaces")),
        beacon_port=beacon_port,
        anti_entropy_s=_number(values, "anti_entropy_s", 1, 86400),
        beacon_interval_s=_number(values, "beacon_interval_s", 0.5, 3600),
        backoff_min_s=low, backoff_max_s=high,
        uplink=tuple(parse_hostport(p, "uplink", low=1)
                     for p in _string_list(values, "uplink")),
        share=share,
        max_handshakes=_count(values, "max_handshakes", 1, 65536),
        kpu_idle_days=_count(values, "kpu_idle_days", 1, 366),
        max_handshakes_per_source=_count(values, "max_handshakes_per_source", 1, 65536),
        refusal_log_interval_s=_number(values, "refusal_log_interval_s", 1, 86400),
    )


def load_config(home: Home, config_file: Path | None = None,
                overrides: dict[str, Any] | None = None, *,
                from_flags: bool = True) -> DaemonConfig:
    """Defaults, then the home's ``config.toml`` (or ``config_file``), then ``overrides``
    (None values are ignored). ``from_flags``: the overrides came from ``meshsync
    daemon``'s flags, so an error names the flag (``--listen``), else the key."""
    values = dict(DEFAULTS)
    if config_file is not None:
        values.update(_read_toml(config_file))
    else:
        values.update(home.config())
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    values.update(flags)
    try:
        return validate(values, config_file or home.config_path)
    except UsageError as exc:
        if not from_flags:
            raise
        raise _named_by_flag(exc, flags) from None


#: The ``meshsync daemon`` flag that overrides each key (``overrides`` of load_config).
FLAGS = {"listen": "--listen", "api": "--api", "mesh": "--mesh", "static_peers": "--static-peer",
         "discovery": "--discovery", "uplink": "--uplink"}


def _named_by_flag(exc: UsageError, flags: dict[str, Any]) -> UsageError:
    """``exc`` naming the flag instead of the config key when a flag gave the value."""
    message = str(exc)
    for key in flags:
        prefix = f"config {key}: "
        if message.startswith(prefix):
            return UsageError(f"{FLAGS.get(key, key)}: {message[len(prefix):]}")
    return exc


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config {path}: {exc}") from exc
