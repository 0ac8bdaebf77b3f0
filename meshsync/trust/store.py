"""TrustStore: what one device knows about authorities, certificates and revocations.

Credentials travel like any other data (docs/architecture.md §6): a device :meth:`adds
<TrustStore.add>` every certificate or revocation it receives, forwards
:meth:`~TrustStore.blobs` to its peers, and asks :meth:`~TrustStore.authorize_change`
before applying or forwarding a change. Nothing here reads the clock: times
are arguments (``at_ms``, milliseconds since the Unix epoch; certificate
validity has whole-second resolution, so ``at_ms`` is floored to seconds).

**Pending certificates.** A device certificate may arrive before the
certificate of the sub-authority that issued it. If no known authority has its
issuer's name, it is kept *pending* (``add`` returns ``"certificate"``); when a
sub-authority certificate arrives every pending certificate is verified again
and either admitted or rejected (the reason is kept for ``authorize_change``
and ``device_info``). Pending certificates are not forwarded by ``blobs``.

**Proven time.** Every credential it accepts carries a time its signer vouches
for (a certificate's notBefore, RFC 5280 §4.1.2.5; a revocation's time), and
custody receipts of verified gateway and central devices carry their signing
time (:meth:`~TrustStore.note_signed_time`). The newest is :attr:`~TrustStore.proven_ms`,
a lower bound of the current time used when the device's clock is implausible
(:mod:`meshsync.trust.proven`).
"""

from __future__ import annotations

import contextlib
from typing import Any

from meshsync.model.errors import AuthorizationError, UsageError
from meshsync.model.identity import short_id
from meshsync.trust.grant import (
    NOT_REVOKED,
    Grant,
    RevocationPoint,
    describe_point,
    revocation_applies,
    revocation_point,
    stricter,
)
from meshsync.trust.profile import (
    ROLES,
    CertInfo,
    common_name,
    iso,
    load_certificates,
    parse_blob,
    parse_certificate,
)
from meshsync.trust.revocation import Revocation, decode_revocation, is_revocation
from meshsync.trust.schemadoc import SchemaBook, SchemaDoc, decode_schema, is_schema
from meshsync.trust.verify import ChainVerifier, Path

#: Most certificates kept waiting for their issuer (bounds memory against junk).
MAX_PENDING = 4096
#: Most remembered (certificate, second) verification failures.
MAX_MISSES = 4096


def _parse_roots(roots: list[bytes]) -> list[CertInfo]:
    """Parse trusted root certificates; UsageError if one is not a self-signed authority."""
    parsed: list[CertInfo] = []
    for blob in roots:
        try:
            infos = parse_blob(blob)
        except AuthorizationError as exc:
            raise UsageError(f"trusted root: {exc.detail}") from exc
        for info in infos:
            if not info.is_root:
                raise UsageError(f"trusted root: {info.describe()} is not a self-signed authority")
            parsed.append(info)
    return parsed


def _sample_times(info: CertInfo) -> tuple[int, int, int]:
    """Start, middle and end of a certificate's validity (seconds)."""
    return info.not_before, (info.not_before + info.not_after) // 2, info.not_after


class TrustStore:
    """Trusted roots plus every sub-authority, device certificate and revocation seen.

    ``roots``: PEM or DER blobs of the trusted root certificate(s); may be empty,
    then every :meth:`add` and :meth:`authorize_change` fails with "no trusted
    authority installed". Raises UsageError if a root is malformed.
    """

    def __init__(self, roots: list[bytes]) -> None:
        self._roots = _parse_roots(roots)
        self._root_fps = {r.fingerprint for r in self._roots}
        self._verifier = ChainVerifier(self._roots)
        self._authorities: dict[bytes, CertInfo] = {}
        self._devices: dict[bytes, dict[bytes, Grant]] = {}
        self._pending: dict[bytes, CertInfo] = {}
        self._rejected: dict[bytes, dict[bytes, tuple[CertInfo, str]]] = {}
        self._revocations: dict[bytes, list[Revocation]] = {}
        self._revocation_blobs: set[bytes] = set()
        self._misses: dict[tuple[bytes, int], str] = {}
        self._proven_ms = max((r.not_before * 1000 for r in self._roots), default=0)
        #: Schema documents signed by a trusted root (:mod:`meshsync.trust.schemadoc`).
        self.schemas = SchemaBook()

    # -- adding credentials ---------------------------------------------------

    def add(self, blob: bytes) -> str | None:
        """Accept a certificate (PEM/DER, PEM may hold a whole chain) or a revocation.

        Also accepts a schema document signed by a trusted root
        (:mod:`meshsync.trust.schemadoc`), returning ``"schema"`` when new.
        Returns ``"certificate"`` or ``"revocation"`` when something new was
        stored (including a pending certificate), None when all was known.
        Raises :class:`AuthorizationError` if the blob is malformed, or its
        signature or chain does not verify to a trusted root. In a PEM chain,
        authorities are added before the device certificate; one that verifies
        stays even if a later certificate of the same blob is refused.
        """
        if not self._roots:
            raise AuthorizationError("no trusted authority installed")
        if is_revocation(blob):
            return "revocation" if self._add_revocation(decode_revocation(blob)) else None
        if is_schema(blob):
            return "schema" if self._add_schema(decode_schema(blob)) else None
        infos = sorted(parse_blob(blob), key=lambda i: (not i.is_root, not i.is_ca))
        added = [self._add_certificate(info) for info in infos]
        return "certificate" if any(added) else None

    def _knows(self, info: CertInfo) -> bool:
        fp = info.fingerprint
        if fp in self._root_fps or fp in self._authorities or fp in self._pending:
            return True
        return info.device_key is not None and fp in self._devices.get(info.device_key, {})

    def _add_certificate(self, info: CertInfo) -> bool:
        if self._knows(info):
            return False
        if info.is_root:
            raise AuthorizationError(f"{info.describe()} is not a trusted authority here")
        if info.is_ca:
            self._add_authority(info)
        elif self._issuer_known(info):
            self._admit_or_reject(info)
        elif len(self._pending) >= MAX_PENDING:
            raise AuthorizationError("too many certificates waiting for their issuer")
        else:
            self._pending[info.fingerprint] = info
        return True

    def _admit_or_reject(self, info: CertInfo) -> None:
        """Admit a device certificate whose issuer is known, else remember why it was
        refused (for :meth:`device_info` and custody's reasons) and raise that."""
        try:
            self._admit(info, self._verify_sometime(info))
        except AuthorizationError as exc:
            assert info.device_key is not None
            if sum(len(r) for r in self._rejected.values()) < MAX_PENDING:
                self._rejected.setdefault(info.device_key, {})[info.fingerprint] = (
                    info, exc.detail)
            raise

    def _issuer_known(self, info: CertInfo) -> bool:
        authorities = [*self._roots, *self._authorities.values()]
        return any(a.cert.subject == info.cert.issuer for a in authorities)

    def _verify_sometime(self, info: CertInfo) -> Path:
        """Verify a device chain at its start, middle or end; first error if none works."""
        first: AuthorizationError | None = None
        for at_s in _sample_times(info):
            try:
                return self._verifier.device_path(info, self._intermediates(), at_s)
            except AuthorizationError as exc:
                first = first or exc
        assert first is not None
        raise first

    def _intermediates(self) -> list[CertInfo]:
        return list(self._authorities.values())

    def _add_authority(self, info: CertInfo) -> None:
        first: AuthorizationError | None = None
        for at_s in _sample_times(info):
            try:
                self._verifier.authority_path(info, at_s)
                break
            except AuthorizationError as exc:
                first = first or exc
        else:
            assert first is not None
            raise first
        self._authorities[info.fingerprint] = info
        self.note_time(info.not_before * 1000)
        self._misses.clear()
        self._retry_pending()

    def _admit(self, info: CertInfo, path: Path) -> None:
        assert info.device_key is not None
        revocations = self._revocations.get(info.device_key, [])
        grant = Grant(info, [path], revocation_point(revocations, info))
        self._devices.setdefault(info.device_key, {})[info.fingerprint] = grant
        self.note_time(info.not_before * 1000)
        self._rejected.get(info.device_key, {}).pop(info.fingerprint, None)

    def _retry_pending(self) -> None:
        """Verify again every pending certificate whose issuer is now known."""
        for fp, info in list(self._pending.items()):
            if not self._issuer_known(info):
                continue
            del self._pending[fp]
            with contextlib.suppress(AuthorizationError):
                self._admit_or_reject(info)

    def _add_revocation(self, revocation: Revocation) -> bool:
        if revocation.blob in self._revocation_blobs:
            return False
        self._check_revocation_issuer(revocation)
        self._revocation_blobs.add(revocation.blob)
        self.note_time(min(revocation.at_ms, revocation.issuer.not_after * 1000))
        key = revocation.device_key
        self._revocations.setdefault(key, []).append(revocation)
        for grant in self._devices.get(key, {}).values():
            grant.revoked_after = revocation_point(self._revocations[key], grant.info)
        return True

    def _add_schema(self, doc: SchemaDoc) -> bool:
        """Keep a schema document signed by a trusted root (a sub-authority may not
        publish one: :mod:`meshsync.trust.schemadoc`)."""
        if not (doc.issuer.is_root and doc.issuer.fingerprint in self._root_fps):
            raise AuthorizationError(f"schema document {doc.collection} v{doc.version}: "
                                     f"{doc.issuer.describe()} is not the trusted root "
                                     "authority, the only one that publishes schemas")
        return self.schemas.add(doc)

    def _check_revocation_issuer(self, revocation: Revocation) -> None:
        """The issuer must be a trusted root, or a sub-authority valid when it signed."""
        issuer = revocation.issuer
        if issuer.is_root and issuer.fingerprint in self._root_fps:
            return
        try:
            if issuer.is_root:
                raise AuthorizationError(f"{issuer.describe()} is not a trusted authority here")
            self._verifier.authority_path(issuer, revocation.at_ms // 1000)
        except AuthorizationError as exc:
            raise AuthorizationError(
                f"revocation of device {short_id(revocation.device_key)}: {exc.detail}"
            ) from exc

    # -- proven time ------------------------------------------------------------

    @property
    def proven_ms(self) -> int:
        """The newest time (ms since the epoch) a trusted signature here vouches for:
        a lower bound of the current time (0 if none; see the module docs)."""
        return self._proven_ms

    def note_time(self, at_ms: int) -> None:
        """Raise :attr:`proven_ms` to ``at_ms`` (ms) if later: a time the caller has
        from a trusted signature (e.g. kept in the store's meta)."""
        self._proven_ms = max(self._proven_ms, at_ms)

    def note_signed_time(self, issuer: bytes, at_ms: int) -> bool:
        """Learn ``at_ms`` from a custody receipt ``issuer`` signed (ms since the epoch).

        Counts only if ``issuer`` holds a verified gateway or central certificate
        whose chain is valid at that time (a signer cannot vouch for a time outside
        its own certificate). Returns True if it counted.
        """
        at_s = at_ms // 1000
        for grant in self._devices.get(issuer, {}).values():
            if grant.info.role in ("gateway", "central") and grant.covers(at_s):
                self.note_time(at_ms)
                return True
        return False

    # -- reading ----------------------------------------------------------------

    def blobs(self) -> list[bytes]:
        """Every verified credential, canonical and in a deterministic order.

        Sub-authority certificates (DER), then device certificates (DER), then
        revocations, then schema documents (canonical msgpack), each group sorted
        by bytes. Roots and
        pending certificates are not included.
        """
        authorities = sorted(info.der for info in self._authorities.values())
        devices = sorted(g.info.der for gs in self._devices.values() for g in gs.values())
        return authorities + devices + sorted(self._revocation_blobs) + self.schemas.blobs()

    def revocation_for(self, author: bytes) -> RevocationPoint:
        """Strictest revocation of ``author`` that binds any of its known certificates.

        Returns :data:`NOT_REVOKED` if none, None if every change is refused,
        else the last seq still accepted. A root's revocation always counts.
        """
        grants = list(self._devices.get(author, {}).values())
        point: RevocationPoint = NOT_REVOKED
        for revocation in self._revocations.get(author, []):
            if revocation.issuer.is_root or any(
                revocation_applies(revocation, g.info) for g in grants
            ):
                point = stricter(point, revocation.after_seq)
        return point

    def verified_devices(self) -> list[tuple[CertInfo, RevocationPoint]]:
        """Every verified device certificate with its device's strictest revocation
        (:meth:`revocation_for`), ordered by device key then fingerprint."""
        return [(g.info, self.revocation_for(key)) for key in sorted(self._devices)
                for _, g in sorted(self._devices[key].items())]

    @property
    def pending_count(self) -> int:
        """Certificates held that wait for an issuer this store does not know (so
        verify nothing yet)."""
        return len(self._pending)

    def device_info(self, author: bytes) -> list[dict[str, Any]]:
        """One dict per certificate of ``author`` (verified, pending or rejected).

        Keys: device_id, name, role, scope, not_before, not_after (ISO 8601 UTC),
        issuer, status ("verified" | "pending" | "rejected"), revoked (bool),
        revoked_after (int or None), reason (str, for rejected only).
        """
        rows = [
            self._row(g.info, g.issuer_name, "verified", g.revoked_after)
            for g in self._devices.get(author, {}).values()
        ]
        revocations = self._revocations.get(author, [])
        for info in self._pending.values():
            if info.device_key == author:
                point = revocation_point(revocations, info)
                rows.append(self._row(info, common_name(info.cert.issuer), "pending", point))
        for info, reason in self._rejected.get(author, {}).values():
            row = self._row(info, common_name(info.cert.issuer), "rejected", NOT_REVOKED)
            rows.append({**row, "reason": reason})
        return sorted(rows, key=lambda r: (r["not_before"], r["not_after"], r["status"]))

    @staticmethod
    def _row(info: CertInfo, issuer: str, status: str, point: RevocationPoint) -> dict[str, Any]:
        return {
            **info.to_json(issuer),
            "status": status,
            "revoked": point is not NOT_REVOKED,
            "revoked_after": None if point is NOT_REVOKED else point,
        }

    # -- decisions ----------------------------------------------------------------

    def authorize_change(self, author: bytes, partition: str, seq: int, at_ms: int) -> None:
        """Raise :class:`AuthorizationError` unless ``author`` may write this change.

        ``author``: 32-byte device key; ``partition``: the change's partition;
        ``seq``: its feed seq; ``at_ms``: the time to judge validity at (ms).
        Any one of the author's certificates that allows it suffices. The reason
        names the device (short id) and each certificate's refusal.
        """
        at_s = at_ms // 1000
        grants = self._devices.get(author, {})
        for grant in grants.values():
            if grant.allows(partition, seq, at_s):
                return
        reasons: list[str] = []
        for grant in grants.values():
            reason = self._time_reason(grant, at_s) or grant.reason(partition, seq)
            if reason is None:
                return
            reasons.append(reason)
        raise AuthorizationError(f"device {short_id(author)}: {self._explain(author, reasons)}")

    def _time_reason(self, grant: Grant, at_s: int) -> str | None:
        """Why no verified chain of ``grant`` is valid at ``at_s``; None if one is.

        Outside every cached window, the verifier is run again at ``at_s`` (a
        renewed sub-authority may give another path); failures are remembered.
        """
        if grant.covers(at_s):
            return None
        info = grant.info
        if at_s < info.not_before:
            return f"certificate {info.name!r} not valid before {iso(info.not_before)}"
        if at_s > info.not_after:
            return f"certificate {info.name!r} expired at {iso(info.not_after)}"
        key = (info.fingerprint, at_s)
        if key in self._misses:
            return self._misses[key]
        try:
            grant.paths.append(self._verifier.device_path(info, self._intermediates(), at_s))
            return None
        except AuthorizationError as exc:
            if len(self._misses) >= MAX_MISSES:
                self._misses.clear()
            self._misses[key] = exc.detail
            return exc.detail

    def _peer_path(self, leaf: CertInfo, intermediates: list[CertInfo], at_s: int,
                   at_least: bool) -> Path:
        try:
            return self._verifier.device_path(leaf, intermediates, at_s)
        except AuthorizationError:
            if not at_least or leaf.not_before <= at_s:
                raise
        path = self._verifier.device_path(leaf, intermediates, leaf.not_before)
        self.note_time(leaf.not_before * 1000)
        return path

    def _explain(self, author: bytes, reasons: list[str]) -> str:
        if not self._roots:
            return "no trusted authority installed"
        if reasons:
            return "; ".join(dict.fromkeys(reasons))
        rejected = [reason for _info, reason in self._rejected.get(author, {}).values()]
        if rejected:
            return "no valid certificate: " + "; ".join(rejected)
        if any(info.device_key == author for info in self._pending.values()):
            return "no certificate that verifies to a trusted root (issuer unknown)"
        return "no certificate"

    def peer_identity(self, cert_chain_der: list[bytes], at_ms: int, *,
                      at_least: bool = False) -> tuple[bytes, str, str]:
        """Check a chain presented in a TLS handshake: (device key, role, scope).

        ``cert_chain_der``: leaf first, then any intermediates (DER). Verified at
        ``at_ms`` against the trusted roots with the presented and known
        sub-authorities. ``at_least``: ``at_ms`` is only a lower bound of the time
        (the proven time, the device's clock being wrong); then a chain not yet
        valid at ``at_ms`` is checked again at its leaf's notBefore (a time the
        authority vouches for, RFC 5280 §4.1.2.5), which becomes the proven time,
        while one that expired before ``at_ms`` still fails. Raises
        :class:`AuthorizationError` if it does not verify, is not a device
        certificate, its issuer may not issue its role, or any revocation binds it.
        """
        if not cert_chain_der:
            raise AuthorizationError("peer presented no certificate")
        infos = [parse_certificate(c) for der in cert_chain_der for c in load_certificates(der)]
        leaf = infos[0]
        if leaf.device_key is None or leaf.role is None or leaf.scope is None:
            raise AuthorizationError(f"peer {leaf.describe()} is not a device certificate")
        extra = [i for i in infos[1:] if i.is_ca and not i.is_root]
        self._peer_path(leaf, extra + self._intermediates(), at_ms // 1000, at_least)
        if leaf.role not in ROLES:
            raise AuthorizationError(f"device {short_id(leaf.device_key)}: unknown role")
        point = revocation_point(self._revocations.get(leaf.device_key, []), leaf)
        if point is not NOT_REVOKED:
            raise AuthorizationError(
                f"device {short_id(leaf.device_key)}: {describe_point(point)}; session refused"
            )
        return leaf.device_key, leaf.role, leaf.scope
