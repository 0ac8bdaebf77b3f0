"""Validators built from signed schema documents (docs/architecture.md §4).

A schema document (:mod:`meshsync.trust.schemadoc`) is declarative: this module
interprets it. Its body is a map::

    {"package": "coklit",            # where its named rules come from (entry points)
     "order": ["nkk", "nik", ...],   # the fields, in the order they are checked
     "fields": {name: spec, ...},
     "rules": ["cross", ...],        # named record rules, run in this order
     "params": {...}}                # settings handed to the named record rules

A field ``spec`` holds any of: ``type`` (``"text"``: non-empty text without control
characters; ``"integer"``: a whole number, not a boolean; ``"list"``; ``"map"``;
``"any"``), ``required`` (bool), ``codes`` (code -> meaning: the value, or each
item of a list, must be one of them), ``pattern`` (a regular expression the whole
text must match), ``min``/``max`` (integer range), ``max_chars``, ``unique`` (a
list names each code once), ``hint`` (shown when the type or pattern is wrong) and
``check`` (a named field rule). Named rules are code the schema's package ships,
selected by name: a distribution declares the package in the
``meshsync.schema_packages`` entry point group (:class:`SchemaPackage`).

**Which version judges.** Every edit, local or received, is judged by the newest
version the node holds. A received change the newest refuses but an older held
version accepts (its author had not learned the newer one yet) is *applied* and
flagged (:meth:`DocumentValidator.older_accepts`): it is logged and reported, never
dropped, and a node that learns the newer version after applying it ends in the
same state as one that knew it first. A change no held version accepts is stored,
forwarded and kept out of the records, as before (:mod:`meshsync.replica.receive`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from meshsync.replica.policy import Validator
    from meshsync.trust.schemadoc import SchemaBook, SchemaDoc

Problems = list[tuple[str, str]]
FieldRule = Callable[..., "str | None"]
"""A named field rule: the value -> a problem (a sentence fragment) or None; with a
true ``takes_record`` attribute, ``(value, given)``: ``given`` is the edit's fields."""
RecordRule = Callable[[dict[str, Any], set[str], bool, "str | None", dict[str, Any]], Problems]
"""A named record rule: ``(ok, given, whole, partition, params)`` -> problems.

``ok``: the fields that passed their own checks; ``given``: every field name of the
edit, cleared ones included; ``whole``: the record is complete (a local edit or a
new record); ``partition``: the record's partition; ``params``: the document's.
"""


class SchemaPackage(Protocol):
    """What a ``meshsync.schema_packages`` entry point names: the named rules of a
    schema and the document its authority publishes."""

    field_rules: Mapping[str, FieldRule]
    record_rules: Mapping[str, RecordRule]

    # Optional: ``fast_acceptance(body)`` -> ``accept(fields, partition) -> bool`` or
    # None. Offered for a body the package knows exactly (its own document), ``accept``
    # returns True only for a whole record that body finds valid (a shortcut past the
    # interpretation; False means "judge it in full"). :class:`Compiled` uses it.

    def document(self) -> dict[str, Any]:
        """``{"collection": name, "body": body}`` of the package's current rules."""
        ...


PackageLookup = Callable[[str], "SchemaPackage | None"]
"""Package name -> the installed package, or None (set by the I/O layer)."""


def _type_problem(spec: Mapping[str, Any], value: Any) -> str | None:
    kind, hint = spec.get("type", "any"), spec.get("hint")
    hinted = f" ({hint})" if hint else ""
    if kind == "text":
        if not isinstance(value, str) or not value.strip():
            return f"must be non-empty text{hinted}, not {value!r}"
        if not value.isprintable() and any(  # printable text holds no category C
                unicodedata.category(c).startswith("C") for c in value):
            return "contains a control character"
    elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"must be a whole number{hinted}, not {value!r}"
    elif kind == "list" and not isinstance(value, list):
        return f"must be a list{hinted}, not {value!r}"
    elif kind == "map" and not isinstance(value, dict):
        return f"must be a map{hinted}, not {value!r}"
    return None


def _codes_problem(spec: Mapping[str, Any], value: Any) -> str | None:
    codes = spec.get("codes")
    if codes is None:
        return None
    if isinstance(value, list):
        if any(not isinstance(v, str) or v not in codes for v in value):
            return f"must be a list of {', '.join(codes)}; got {value!r}"
        if spec.get("unique") and len(set(value)) != len(value):
            return "lists a code twice"
        return None
    if isinstance(value, str) and value in codes:
        return None
    listed = ", ".join(f"{code} ({meaning})" for code, meaning in codes.items())
    return f"is {value!r}; use one of {listed}"


def _range_problem(spec: Mapping[str, Any], value: Any) -> str | None:
    low, high = spec.get("min"), spec.get("max")
    if isinstance(value, int) and not isinstance(value, bool) and (
            (low is not None and value < low) or (high is not None and value > high)):
        return f"must be {low}-{high}, not {value}"
    limit = spec.get("max_chars")
    if isinstance(value, str) and limit is not None and len(value) > limit:
        return f"is {len(value)} characters; the limit is {limit}"
    pattern = spec.get("pattern")
    if isinstance(value, str) and pattern is not None and not re.fullmatch(pattern, value):
        hint = spec.get("hint")
        return f"must be {hint}, not {value!r}" if hint else (
            f"must match the pattern {pattern}, not {value!r}")
    return None


_SPEC_TYPES: dict[str, type | tuple[type, ...]] = {
    "type": str, "required": bool, "codes": dict, "pattern": str, "min": int, "max": int,
    "max_chars": int, "unique": bool, "hint": str, "check": str, "meaning": str}


def _spec_problem(name: Any, spec: Any) -> str | None:
    """Why one field spec of a document body is malformed, or None."""
    if not isinstance(name, str) or not isinstance(spec, dict):
        return f"field {name!r} is not a name with a map of rules"
    for key, value in spec.items():
        wanted = _SPEC_TYPES.get(key)
        if wanted is None or not isinstance(value, wanted):
            return f"field {name!r} has a bad rule {key!r}: {value!r}"
    if "codes" in spec and not all(isinstance(c, str) for c in spec["codes"]):
        return f"field {name!r} has a code that is not text"
    try:
        re.compile(spec.get("pattern", ""))
    except re.error as exc:
        return f"field {name!r} has a bad pattern: {exc}"
    return None


def body_problem(body: Any) -> str | None:
    """Why a schema document body is malformed (a sentence fragment), or None.

    The shape is in this module's docstring. A malformed newest version refuses
    every edit of its collection with this reason (it never raises in the receive
    path); ``meshsync authority schema publish`` refuses to sign one.
    """
    if not isinstance(body, dict) or not isinstance(body.get("fields", {}), dict):
        return "the body is not a map with a map of fields"
    lists = [body.get(k, []) for k in ("order", "rules")]
    if not all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in lists):
        return "order and rules must be lists of names"
    if not isinstance(body.get("params", {}), dict) or not isinstance(
            body.get("package", ""), str):
        return "params must be a map and package a name"
    for name, spec in body.get("fields", {}).items():
        problem = _spec_problem(name, spec)
        if problem:
            return problem
    return None


class Compiled:
    """One document version, ready to judge edits (see :class:`DocumentValidator`)."""

    def __init__(self, doc: SchemaDoc, packages: PackageLookup) -> None:
        self.doc = doc
        self.malformed = body_problem(doc.body)
        body = {} if self.malformed else doc.body
        self.fields: dict[str, dict[str, Any]] = dict(body.get("fields", {}))
        self.order: list[str] = [*body.get("order", []),
                                 *sorted(set(self.fields) - set(body.get("order", [])))]
        self.required = frozenset(n for n, s in self.fields.items() if s.get("required"))
        self.params: dict[str, Any] = dict(body.get("params", {}))
        package_name = body.get("package")
        self.package = packages(package_name) if isinstance(package_name, str) else None
        self.package_name = package_name
        self.rule_names: list[str] = list(body.get("rules", []))
        offer = getattr(self.package, "fast_acceptance", None)
        #: The package's shortcut for a whole valid record of exactly this body, if any.
        self.accepts: Callable[[dict[str, Any], str], bool] | None = (
            offer(body) if offer is not None and not self.malformed else None)

    def _missing_rule(self, name: str) -> str:
        return (f"needs rule {self.package_name}.{name} of schema {self.doc.collection} "
                f"v{self.doc.version}, which this device lacks (install or upgrade the "
                f"{self.package_name} package)")

    def field_problem(self, name: str, value: Any,
                      given: dict[str, Any] | None = None) -> str | None:
        """The first problem of one field's value, or None. A named rule with a true
        ``takes_record`` attribute is also given the edit's other fields (``given``)."""
        spec = self.fields[name]
        problem = (_type_problem(spec, value) or _codes_problem(spec, value)
                   or _range_problem(spec, value))
        check = spec.get("check")
        if problem or check is None:
            return problem
        rule: Any = self.package.field_rules.get(check) if self.package else None
        if rule is None:
            return self._missing_rule(check)
        if getattr(rule, "takes_record", False):
            return cast("str | None", rule(value, given or {}))
        return cast("str | None", rule(value))

    def check(self, fields: dict[str, Any], *, partial: bool,
              partition: str | None) -> Problems:
        """Problems of a record (``partial`` False) or of a received op (True)."""
        if self.malformed:
            return [("schema", f"{self.doc.collection} v{self.doc.version} is malformed "
                               f"({self.malformed}); ask the authority for a new version")]
        if not partial and partition is not None and self.accepts is not None and \
                self.accepts(fields, partition):
            return []  # the package vouches for this body: valid, no message to build
        given = {k: v for k, v in fields.items() if v is not None and v not in ("", [])}
        problems: Problems = []
        for name in self.order:
            if name in given:
                message = self.field_problem(name, given[name], given)
                if message:
                    problems.append((name, message))
        known = ", ".join(self.order)
        problems += [(name, f"is not a {self.doc.collection} field (fields: {known})")
                     for name in sorted(given) if name not in self.fields]
        missing = "is required and cannot be cleared" if partial else "is required but missing"
        problems += [(name, missing) for name in self.order if name in self.required
                     and name not in given and (name in fields or not partial)]
        bad = {name for name, _ in problems}
        ok = {k: v for k, v in given.items() if k not in bad}
        for rule_name in self.rule_names:
            rule = self.package.record_rules.get(rule_name) if self.package else None
            if rule is None:
                problems.append(("schema", self._missing_rule(rule_name)))
                continue
            problems += rule(ok, set(fields), not partial, partition, self.params)
        return _first_per_field(problems)


def _first_per_field(problems: Problems) -> Problems:
    """One message per field, the first found."""
    first: dict[str, str] = {}
    for name, message in problems:
        first.setdefault(name, message)
    return list(first.items())


class DocumentValidator:
    """The validator of one collection, judged by the newest document held
    (:class:`meshsync.replica.policy.Validator`, with ``takes_partition``).

    ``book``: the node's schema documents (the trust store's); ``packages``: finds
    the named rules. Versions are compiled once, on first use.
    """

    takes_partition = True

    def __init__(self, collection: str, book: SchemaBook, packages: PackageLookup) -> None:
        self.collection, self.book, self.packages = collection, book, packages
        self._compiled: dict[bytes, Compiled] = {}

    def _compile(self, doc: SchemaDoc) -> Compiled:
        compiled = self._compiled.get(doc.blob)
        if compiled is None:
            compiled = self._compiled[doc.blob] = Compiled(doc, self.packages)
        return compiled

    def newest(self) -> Compiled:
        """The newest held version, compiled. Raises LookupError if none is held."""
        doc = self.book.newest(self.collection)
        if doc is None:
            raise LookupError(f"no schema document for {self.collection}")
        return self._compile(doc)

    def judge(self) -> Compiled:
        """The version that judges now (the newest held), for
        :func:`meshsync.replica.policy.judge_of`."""
        return self.newest()

    @property
    def required(self) -> frozenset[str]:
        """The required fields of the newest version (used by the receive path to
        judge an op that creates a record as a whole record)."""
        return self.newest().required

    @property
    def version(self) -> int:
        """The newest held version number."""
        return self.newest().doc.version

    def __call__(self, key: str, fields: dict[str, Any], *, partial: bool,
                 partition: str | None = None) -> Problems:
        """Problems under the newest version; see :class:`Compiled.check`."""
        return self.newest().check(fields, partial=partial, partition=partition)

    def older_accepts(self, fields: dict[str, Any], *, partial: bool,
                      partition: str | None) -> SchemaDoc | None:
        """The newest *older* held version that accepts ``fields``, or None."""
        for doc in reversed(self.book.versions(self.collection)[:-1]):
            if not self._compile(doc).check(fields, partial=partial, partition=partition):
                return doc
        return None


class Validators(MutableMapping[str, "Validator"]):
    """A node's validators: those registered by code, and one per collection that
    has a schema document (which wins over a registered one).

    ``book``: returns the node's :class:`~meshsync.trust.schemadoc.SchemaBook`, or
    None while it has no trust store (not enrolled). :attr:`packages` is set by the
    I/O layer (:func:`meshsync.host.local.open_node`); until then named rules are
    missing and reported as such.
    """

    def __init__(self, book: Callable[[], SchemaBook | None]) -> None:
        self._book = book
        self._registered: dict[str, Validator] = {}
        self._documents: dict[str, DocumentValidator] = {}
        self.packages: PackageLookup = lambda _name: None

    def document_validator(self, collection: str) -> DocumentValidator | None:
        """The collection's validator from a held schema document, or None."""
        book = self._book()
        if book is None or book.newest(collection) is None:
            return None
        found = self._documents.get(collection)
        if found is None or found.book is not book:
            found = self._documents[collection] = DocumentValidator(
                collection, book, self._package)
        return found

    def _package(self, name: str) -> SchemaPackage | None:
        """Look ``name`` up in :attr:`packages` as set now (it is set after creation)."""
        return self.packages(name)

    def __getitem__(self, collection: str) -> Validator:
        return self.document_validator(collection) or self._registered[collection]

    def __setitem__(self, collection: str, validator: Validator) -> None:
        self._registered[collection] = validator

    def __delitem__(self, collection: str) -> None:
        del self._registered[collection]

    def __iter__(self) -> Iterator[str]:
        book = self._book()
        names = set(self._registered) | set(book.collections() if book else ())
        return iter(sorted(names))

    def __len__(self) -> int:
        return len(list(iter(self)))
