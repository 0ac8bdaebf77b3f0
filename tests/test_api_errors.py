"""Bad input to the daemon's local HTTP API gets a clear JSON error, never a 500.

Real ``meshsync daemon`` processes on 127.0.0.1 with ``discovery = ["static"]``,
started and driven with the helpers of ``test_daemon.py``. Covers: records holding
values plain JSON cannot carry (bytes, NaN, infinities: written through the library)
read in their tagged JSON form, and bytes written back through the API; posted
values the API cannot accept refused with 400 naming the field; unknown paths and
methods (404, 405) answered in the API's JSON error shape; duplicate keys in a body
refused; oversized bodies refused with 413 from ``Content-Length`` before they are
read, and chunked bodies as soon as they pass the limit.
"""

from __future__ import annotations

import base64
import json
import math
import socket
import threading
import time
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import test_daemon
from meshsync.daemon.api import MAX_BODY_BYTES
from netfixtures import LOOPBACK, run
from test_daemon import Lab, http

from meshsync.host.local import open_node
from meshsync.model.limits import MAX_RECORD_BYTES

# test_daemon's fixtures: a daemon lab on a copy of one enrolled district.
template = test_daemon.template
lab = test_daemon.lab

PHOTO = bytes(range(256)) * 3
ODD = {
    "foto": PHOTO,
    "kosong": b"",
    "skor": math.nan,
    "batas": math.inf,
    "bawah": -math.inf,
    "daftar": [b"\x00", 1.5, {"dalam": b"\xff"}],
    "mirip": {"$bytes": "bukan bytes"},  # a stored map that looks like a tag
    "biasa": {"a": 1, "$bytes": "x"},      # two keys: not tag-shaped, shown as is
}
ODD_JSON = {
    "foto": {"$bytes": base64.b64encode(PHOTO).decode()},
    "kosong": {"$bytes": ""},
    "skor": {"$float": "NaN"},
    "batas": {"$float": "Infinity"},
    "bawah": {"$float": "-Infinity"},
    "daftar": [{"$bytes": "AA=="}, 1.5, {"dalam": {"$bytes": "/w=="}}],
    "mirip": {"$map": {"$bytes": "bukan bytes"}},
    "biasa": {"a": 1, "$bytes": "x"},
}


def _library_put(home: Path, key: str, fields: dict[str, Any],
                 partition: str | None = None) -> None:
    with open_node(home) as node:
        node.put("voters", key, fields, partition)


def _is_strict_json(text: str) -> bool:
    def refuse(name: str) -> Any:
        raise ValueError(name)
    try:
        json.loads(text, parse_constant=refuse)
    except ValueError:
        return False
    return True


# -- 1. values JSON cannot carry ---------------------------------------------------------


def test_records_holding_bytes_and_non_finite_floats_read_in_tagged_json(lab: Lab) -> None:
    _library_put(lab.home("phone-a"), "v-aneh", ODD)
    daemon = lab.daemon("phone-a").start()
    for path in ("/api/records/voters/v-aneh", "/api/records/voters"):
        reply = daemon.request("GET", path)
        assert reply.status == 200, (path, reply)
        record = reply.body["records"][0] if "records" in reply.body else reply.body
        assert record["fields"] == ODD_JSON, path
    # Concurrent edits of a bytes field: the conflict versions use the same form.
    _library_put(lab.home("phone-b"), "v-aneh", {"foto": b"lain"}, record["partition"])
    bundle = lab.logs / "phone-b.msb"
    run("bundle", "export", "--clear", "--home", lab.home("phone-b"), "-o", bundle)
    run("bundle", "import", "--home", daemon.home, bundle)
    conflicts = daemon.listing("/api/conflicts")
    [record] = conflicts
    values = [v["value"] for v in record["conflicts"]["foto"]]
    assert sorted(v["$bytes"] for v in values) == sorted(
        [base64.b64encode(PHOTO).decode(), base64.b64encode(b"lain").decode()])


def test_bytes_written_back_in_tagged_form_are_stored_as_bytes(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    fields = {"foto": {"$bytes": base64.b64encode(b"\x00\x01jpeg").decode()},
              "peta": {"$map": {"$bytes": "teks"}}, "nama": "Contoh"}
    reply = daemon.request("PUT", "/api/records/voters/v-1", {"fields": fields})
    assert reply.status == 200, reply
    assert reply.body["record"]["fields"] == fields
    with open_node(daemon.home) as node:
        record = node.get("voters", "v-1")
    assert record is not None
    assert record.fields == {"foto": b"\x00\x01jpeg", "peta": {"$bytes": "teks"},
                             "nama": "Contoh"}


BAD_VALUES = {
    # case: (body, the field named, words of the reason)
    "NaN": (b'{"fields": {"umur": NaN}}', "fields.umur", "NaN"),
    "Infinity in a list": (b'{"fields": {"x": [1, -Infinity]}}', "fields.x[1]", "Infinity"),
    "float overflow": (b'{"fields": {"skor": 1e999}}', "fields.skor", "1e999"),
    "integer too large": (b'{"fields": {"umur": 18446744073709551616}}', "fields.umur",
                          "range"),
    "integer too small": (b'{"fields": {"a": {"b": -9223372036854775809}}}', "fields.a.b",
                          "range"),
    "lone surrogate value": (b'{"fields": {"nama": "\\ud800"}}', "fields.nama", "surrogate"),
    "lone surrogate key": (b'{"fields": {"x": {"\\udfff": 1}}}', "fields.x", "surrogate"),
    "lone surrogate field": (b'{"fields": {"\\ud800": 1}}', "fields", "surrogate"),
    "bad base64": (b'{"fields": {"foto": {"$bytes": "not base64!"}}}', "fields.foto",
                   "base64"),
    "bytes tag not text": (b'{"fields": {"foto": {"$bytes": 5}}}', "fields.foto", "base64"),
    "float tag": (b'{"fields": {"skor": {"$float": "NaN"}}}', "fields.skor", "finite"),
    "map tag not a map": (b'{"fields": {"peta": {"$map": 1}}}', "fields.peta", "$map"),
    "too deep": (b'{"fields": {"x": ' + b"[" * 40 + b"]" * 40 + b"}}", "fields.x" + "[0]" * 15,
                 "deep"),
    "partition type": (b'{"fields": {"a": 1}, "partition": 7}', "partition", "text"),
    "unknown member": (b'{"fields": {"a": 1}, "partisi": "x"}', "partisi", "unknown"),
}


def test_values_the_api_cannot_accept_are_400_naming_the_field(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    daemon.put("voters", "v-0001", {"nama": "Contoh"})
    for case, (body, where, reason) in BAD_VALUES.items():
        reply = daemon.request("PUT", "/api/records/voters/v-0001", body)
        assert reply.status == 400, (case, reply)
        assert reply.content_type.startswith("application/json"), case
        error = reply.body["error"]
        assert error.startswith(f"{where}: ") and reason.lower() in error.lower(), \
            (case, error)
        assert reply.body["field"] == where, (case, reply.body)
        assert "\n" not in error and len(error) < 300, (case, error)
    assert daemon.get("/api/records/voters/v-0001")["fields"] == {"nama": "Contoh"}
    assert daemon.get("/api/status")["changes"] == 1


# -- 2. unknown paths and methods ----------------------------------------------------------


def test_unknown_paths_and_methods_answer_json_errors(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    for path in ("/nope", "/api/nope", "/api/records", "/api/records/voters/v-1/extra"):
        for token in (None, ""):
            reply = daemon.request("GET", path, token=token)
            assert reply.status == 404, (path, reply)
            assert reply.content_type.startswith("application/json"), (path, reply)
            assert set(reply.body) == {"error"} and path in reply.body["error"], reply.body
    long_odd = daemon.request("GET", "/api/" + "x%0A" * 500)
    assert long_odd.status == 404 and "\n" not in long_odd.body["error"]
    assert len(long_odd.body["error"]) < 200, long_odd.body
    for method, path in (("POST", "/api/status"), ("GET", "/api/sync"),
                         ("PATCH", "/api/records/voters/v-1"), ("DELETE", "/"),
                         ("POST", "/api/records/voters")):
        raw = http(method, daemon.api_url + path, daemon.token, b"{}")
        assert raw.status == 405, (method, path, raw)
        assert raw.content_type.startswith("application/json"), (method, path, raw)
        assert method in raw.body["error"] and "allowed" in raw.body["error"], raw.body
    with closing(socket.create_connection((LOOPBACK, _port(daemon.api_url)), 10)) as sock:
        sock.sendall(b"POST /api/status HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n"
                     % daemon.runtime["api"].encode())
        status, headers, _ = _read_reply(sock)
    assert status == 405 and "GET" in headers["allow"]
    page = http("GET", daemon.api_url + "/", daemon.token)
    assert page.status == 200 and page.content_type.startswith("text/html")
    assert "<html lang=\"id\">" in page.body  # Indonesian unless $MESHSYNC_LANG says


# -- 3. duplicate keys ---------------------------------------------------------------------


DUPLICATES = {
    "a field": (b'{"fields": {"nama": "A", "nama": "B"}}', "fields", "nama"),
    "the fields member": (b'{"fields": {"nama": "A"}, "fields": {"nama": "B"}}', "",
                          "fields"),
    "a nested key": (b'{"fields": {"alamat": {"rt": 1, "rw": 2, "rt": 3}}}',
                     "fields.alamat", "rt"),
    "inside a list": (b'{"fields": {"x": [{"a": 1}, {"a": 1, "a": 2}]}}', "fields.x[1]", "a"),
}


def test_duplicate_keys_in_a_body_are_refused_naming_the_key(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    for case, (body, where, key) in DUPLICATES.items():
        reply = daemon.request("PUT", "/api/records/voters/v-0001", body)
        assert reply.status == 400, (case, reply)
        error = reply.body["error"]
        prefix = f"{where}: " if where else ""
        assert error.startswith(prefix) and f"duplicate key {key!r}" in error, (case, error)
    assert daemon.request("GET", "/api/records/voters/v-0001").status == 404
    assert daemon.get("/api/status")["changes"] == 0


# -- 4. large bodies -----------------------------------------------------------------------


def _port(url: str) -> int:
    return int(url.rpartition(":")[2])


def _read_reply(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """Read one HTTP/1.1 response with a Content-Length; (status, headers, JSON body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a reply: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the reply body"
        rest += chunk
    body = json.loads(rest[:length]) if headers.get("content-type", "").startswith(
        "application/json") else rest[:length]
    return int(lines[0].split()[1]), headers, body


def _put_head(token: str, extra: str, port: int) -> bytes:
    return (f"PUT /api/records/voters/v-besar HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"{extra}\r\n").encode()


def _assert_413(status: int, body: Any) -> None:
    assert status == 413, body
    assert body["limit_bytes"] == MAX_BODY_BYTES
    assert str(MAX_BODY_BYTES) in body["error"] and "bytes" in body["error"], body


def test_the_body_limit_is_derived_from_the_record_limit() -> None:
    # A record within the limit fits in a body even with bytes in base64 (4/3).
    assert MAX_RECORD_BYTES * 4 // 3 < MAX_BODY_BYTES <= 2 * MAX_RECORD_BYTES + 65536


def test_a_large_content_length_is_refused_before_the_body_is_read(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    port = _port(daemon.api_url)
    with closing(socket.create_connection((LOOPBACK, _port(daemon.api_url)), 10)) as sock:
        # Announce a terabyte and send none of it: only an early refusal can answer.
        sock.sendall(_put_head(daemon.token, f"Content-Length: {10**12}\r\n", port))
        started = time.monotonic()
        status, _, body = _read_reply(sock)
    assert time.monotonic() - started < 5
    _assert_413(status, body)
    # Just over the limit by one byte is refused the same way; no token: 401 first.
    with closing(socket.create_connection((LOOPBACK, _port(daemon.api_url)), 10)) as sock:
        sock.sendall(_put_head(daemon.token, f"Content-Length: {MAX_BODY_BYTES + 1}\r\n", port))
        _assert_413(*_read_reply(sock)[::2])
    with closing(socket.create_connection((LOOPBACK, _port(daemon.api_url)), 10)) as sock:
        sock.sendall(_put_head("wrong", f"Content-Length: {10**12}\r\n", port))
        assert _read_reply(sock)[0] == 401
    assert daemon.request("GET", "/api/records/voters/v-besar").status == 404


def test_a_chunked_body_is_refused_once_it_passes_the_limit(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    port = _port(daemon.api_url)
    chunk = b"x" * (1024 * 1024)
    replies: list[tuple[int, dict[str, str], Any]] = []
    with closing(socket.create_connection((LOOPBACK, _port(daemon.api_url)), 10)) as sock:
        sock.settimeout(30)
        sock.sendall(_put_head(daemon.token, "Transfer-Encoding: chunked\r\n", port))
        # Read while sending: the server answers, stops reading and closes, and the
        # reset that the unread data causes must not hide the answer from the test.
        reader = threading.Thread(target=lambda: replies.append(_read_reply(sock)))
        reader.start()
        sent = 0
        # Never send the last chunk: only a refusal past the limit can answer.
        with suppress(OSError):
            while sent <= MAX_BODY_BYTES + len(chunk) and reader.is_alive():
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        reader.join(30)
    assert replies, "no reply to an endless chunked body"
    status, _, body = replies[0]
    assert sent <= MAX_BODY_BYTES + 2 * len(chunk)
    _assert_413(status, body)
    # A chunked body within the limit is read as usual.
    body_ok = json.dumps({"fields": {"nama": "Contoh"}}).encode()
    with closing(socket.create_connection((LOOPBACK, _port(daemon.api_url)), 10)) as sock:
        sock.sendall(_put_head(daemon.token, "Transfer-Encoding: chunked\r\n", port)
                     + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body_ok), body_ok))
        status, _, reply = _read_reply(sock)
    assert status == 200 and reply["record"]["fields"] == {"nama": "Contoh"}, reply


def test_bad_query_parameters_are_400_naming_the_parameter(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    daemon.put("voters", "v-0001", {"nama": "Contoh"})
    for method, path in (("GET", "/api/records/voters?partition=Mimika//X"),
                         ("GET", "/api/records/voters/v-0001?partition=tps%20003"),
                         ("DELETE", "/api/records/voters/v-0001?partition=/mimika")):
        reply = daemon.request(method, path)
        assert reply.status == 400, (method, path, reply)
        assert reply.body["field"] == "partition", reply.body
        assert reply.body["error"].startswith("partition: invalid partition"), reply.body
    for body in (b'{"fields": {"a": 1}, "partition": ""}',
                 b'{"fields": {"a": 1}, "partition": "A/B"}'):
        reply = daemon.request("PUT", "/api/records/voters/v-0001", body)
        assert reply.status == 400 and reply.body["field"] == "partition", reply
    assert daemon.get("/api/records/voters/v-0001")["fields"] == {"nama": "Contoh"}


# -- errors a person reads, in their language ------------------------------------------


def test_a_refused_edit_names_each_field_in_the_readers_language(lab: Lab) -> None:
    daemon = lab.daemon("phone-a")
    with (daemon.home / "config.toml").open("a") as f:
        f.write('\nschema = "coklit"\n')
    daemon.start()
    url = daemon.api_url + "/api/records/voters/v-0001"
    body = json.dumps({"fields": {"nama": "Contoh Uji", "nik": "12"}}).encode()
    replies = {lang: http("PUT", url, daemon.token, body, {"Accept-Language": header})
               for lang, header in (("id", "id-ID,id;q=0.9,en;q=0.5"), ("en", "en-US"),
                                    ("default", "fr"))}
    for reply in replies.values():
        assert reply.status == 400, reply
    indonesian, english = replies["id"].body, replies["en"].body
    assert indonesian["error"] == english["error"]  # the stable English line
    assert english["message"] == english["error"]
    assert "nik" in indonesian["fields"] and "nik" in english["fields"], indonesian
    assert indonesian["fields"]["nik"] != english["fields"]["nik"]
    assert indonesian["message"] != english["message"]
    assert replies["default"].body["message"] == indonesian["message"]  # pages' language
    missing = http("GET", url, daemon.token, None, {"Accept-Language": "id"})
    assert missing.status == 404 and missing.body["error"] == "no record voters/v-0001"
    assert missing.body["message"] == "data voters/v-0001 tidak ada", missing.body
    assert indonesian["fields"]["nik"].startswith("harus tepat 16 digit"), indonesian
    # The command line writing through this daemon shows the reader's language too.
    for lang, expected in (("id", "nik: harus tepat 16 digit"), ("en", "nik: must be exactly")):
        put = run("--lang", lang, "put", "--home", daemon.home, "voters", "v-0002", "nik=12",
                  check=False)
        assert put.returncode != 0 and expected in put.stderr, (lang, put.stderr)
