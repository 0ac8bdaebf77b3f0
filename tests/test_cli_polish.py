"""Rough edges a newcomer found, each held by a test: one ``meshsync: error:`` line, the
right exit code, nothing done before a bad argument is refused.

Covers: ``sync --timeout`` refused unless a positive finite number of seconds (exit 2);
``demo --report`` in a missing folder refused before the demo starts; unknown query
parameters of the local API refused with 400 naming them (a PUT takes its partition in
the body, as the OpenAPI document says); ``bundle import`` saying how many held changes
a revocation quarantined; ``serve`` naming the address it cannot listen on; a failed
``sync`` printing one error line without ``-v``; the README's exit-code table and
suite time matching what the code does.
"""

from __future__ import annotations

import re
import socket
import time
from contextlib import closing
from pathlib import Path

import pytest
import test_daemon
from netfixtures import LOOPBACK, VILLAGE, District, ServerProcess, device_id, run
from test_daemon import Lab

template = test_daemon.template
lab = test_daemon.lab

README = Path(__file__).resolve().parents[1] / "README.md"


def one_error_line(stderr: str) -> str:
    """The single ``meshsync: error:`` line (fails on anything else, tracebacks too)."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshsync: error: "), stderr
    return lines[0]


# -- 1. sync --timeout ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "-inf"])
def test_sync_timeout_must_be_a_positive_finite_number(tmp_path: Path, value: str) -> None:
    proc = run("sync", "--home", tmp_path / "none", f"{LOOPBACK}:9", "--timeout", value,
               check=False, timeout=30)
    line = one_error_line(proc.stderr)
    assert proc.returncode == 2, (proc.returncode, line)
    assert "--timeout" in line, line


# -- 2. demo --report --------------------------------------------------------------------


def test_demo_report_in_a_missing_folder_is_refused_before_starting(tmp_path: Path) -> None:
    started = time.monotonic()
    demo_dir = tmp_path / "demo"
    proc = run("demo", "--dir", demo_dir, "--report", tmp_path / "nonexistent" / "r.json",
               "--voters-per-tps", "5", check=False, timeout=60)
    line = one_error_line(proc.stderr)
    assert proc.returncode == 2, (proc.returncode, line)
    assert "--report" in line and "nonexistent" in line, line
    assert time.monotonic() - started < 15, "the demo ran before the path was checked"
    assert not demo_dir.exists(), "the demo left a partial directory behind"


def test_demo_help_says_no_report_file_survives_without_dir_or_report() -> None:
    text = " ".join(run("demo", "--help").stdout.split())
    assert "DIR/report.json]" not in text, text  # DIR is a temporary folder by default
    assert "with --dir" in text, text


# -- 3. unknown query parameters of the local API -------------------------------------------


def test_unknown_query_parameters_are_refused_with_400_naming_them(lab: Lab) -> None:
    phone = lab.daemon("phone-a").start()
    other_tps = f"{VILLAGE}/tps-004"
    for path, name in (
            (f"/api/records/voters/v-0999?partition={other_tps}", "partition"),
            ("/api/records/voters/v-0999?partition=BAD", "partition"),
            ("/api/records/voters/v-0999?fields=x", "fields")):
        reply = phone.request("PUT", path, {"fields": {"nama": "Uji"}})
        assert reply.status == 400, (path, reply.status, reply.body)
        assert reply.body["field"] == name and name in reply.body["error"], reply.body
    # nothing was written by the refused PUTs
    assert phone.request("GET", "/api/records/voters/v-0999").status == 404
    for method, path, name in (
            ("GET", "/api/records/voters?partiton=typo", "partiton"),
            ("GET", "/api/records/voters/v-0001?x=1", "x"),
            ("DELETE", "/api/records/voters/v-0001?parition=a", "parition"),
            ("GET", "/api/status?verbose=1", "verbose"),
            ("GET", "/api/peers?all", "all"),
            ("GET", "/api/conflicts?partition=mimika", "partition"),
            ("GET", "/api/progress?collection=voters&by=tps", "by"),
            ("POST", "/api/sync?now=1", "now")):
        reply = phone.request(method, path)
        assert reply.status == 400, (method, path, reply.status, reply.body)
        assert set(reply.body) == {"error", "field"}, reply.body
        assert reply.body["field"] == name and repr(name) in reply.body["error"], reply.body
    # the parameters each route documents still work
    written = phone.put("voters", "v-0998", {"nama": "Uji"}, partition=other_tps)
    assert written["record"]["partition"] == other_tps, written
    listed = phone.listing(f"/api/records/voters?partition={other_tps}")
    assert [r["key"] for r in listed] == ["v-0998"], listed
    assert phone.get(f"/api/records/voters/v-0998?partition={other_tps}")["key"] == "v-0998"
    assert phone.request("GET", "/api/progress?collection=voters").status == 200


def test_openapi_lists_exactly_the_query_parameters_the_api_accepts() -> None:
    from meshsync.daemon.api import QUERY_PARAMETERS
    from meshsync.daemon.openapi import OPENAPI

    for path, methods in OPENAPI["paths"].items():
        for method, operation in methods.items():
            documented = {p["name"] for p in operation.get("parameters", [])
                          if p["in"] == "query"}
            if path.startswith("/api/") and path != "/api/openapi.json":
                assert QUERY_PARAMETERS[(path, method.upper())] == documented, (path, method)
    put = OPENAPI["paths"]["/api/records/{collection}/{key}"]["put"]
    assert "400" in put["responses"] and "query" in put["description"], put


# -- 4. bundle import shows quarantines -----------------------------------------------------


def test_bundle_import_text_says_how_many_held_changes_were_quarantined(
        tmp_path: Path) -> None:
    district = District(tmp_path)
    a = district.enrol("phone-a", partition=f"{VILLAGE}/tps-001")
    b = district.enrol("phone-b", partition=f"{VILLAGE}/tps-002")
    for key in ("v-1", "v-2", "v-3"):
        run("put", "--home", a, "voters", key, "nama=Uji")
    run("bundle", "export", "--clear", "--home", a, "-o", tmp_path / "a.bundle")
    run("bundle", "import", "--home", b, tmp_path / "a.bundle")
    run("authority", "revoke", "--home", district.authority, device_id(a))
    run("bundle", "export", "--clear", "--home", district.authority, "-o", tmp_path / "kpu.bundle")
    proc = run("bundle", "import", "--home", b, tmp_path / "kpu.bundle")
    assert "3 quarantined" in proc.stdout, proc.stdout
    # none quarantined: not mentioned
    again = run("bundle", "import", "--home", b, tmp_path / "a.bundle", check=False)
    assert "quarantined" not in again.stdout.splitlines()[0], again.stdout


# -- 5. serve on a port in use ---------------------------------------------------------------


def test_serve_on_a_port_in_use_names_the_address(tmp_path: Path) -> None:
    home = District(tmp_path).enrol("phone-a")
    with closing(socket.create_server((LOOPBACK, 0))) as taken:
        port = taken.getsockname()[1]
        proc = run("serve", "--home", home, "--listen", f"{LOOPBACK}:{port}", check=False,
                   timeout=30)
    line = one_error_line(proc.stderr)
    assert proc.returncode == 1 and f"{LOOPBACK}:{port}" in line, (proc.returncode, line)


# -- 6. a failed sync prints one line ----------------------------------------------------------


def test_a_failed_sync_prints_one_error_line_unless_verbose(tmp_path: Path) -> None:
    district = District(tmp_path)
    a = district.enrol("phone-a", partition=f"{VILLAGE}/tps-001")
    b = district.enrol("phone-b", partition=f"{VILLAGE}/tps-002")
    with (b / "config.toml").open("a") as f:
        f.write('mesh = "lain"\n')  # sessions with another mesh fail after the handshake
    server = ServerProcess(b, tmp_path / "serve.log")
    try:
        proc = run("sync", "--home", a, server.address, check=False, timeout=60)
        line = one_error_line(proc.stderr)
        assert proc.returncode == 1 and "mesh" in line, (proc.returncode, line)
        verbose = run("sync", "--home", a, server.address, "-v", check=False, timeout=60)
        assert verbose.returncode == 1
        assert re.search(r"(WARNING|INFO) meshsync", verbose.stderr), verbose.stderr
        assert verbose.stderr.splitlines()[-1].startswith("meshsync: error: "), verbose.stderr
    finally:
        server.terminate()
    # The server logged each failed session once, naming the peer its certificate proved.
    failures = [line for line in (tmp_path / "serve.log").read_text().splitlines()
                if "failed" in line]
    assert len(failures) == 2, failures
    assert all("session with ?" not in line and "mesh" in line for line in failures), failures


def test_a_verbose_sync_logs_its_session(tmp_path: Path) -> None:
    district = District(tmp_path)
    a = district.enrol("phone-a", partition=f"{VILLAGE}/tps-001")
    b = district.enrol("phone-b", partition=f"{VILLAGE}/tps-002")
    server = ServerProcess(b, tmp_path / "serve.log")
    try:
        proc = run("sync", "--home", a, server.address, "-v", timeout=60)
    finally:
        server.terminate()
    assert "INFO meshsync.net: synced with" in proc.stderr, proc.stderr
    assert "converged=True" in proc.stderr


# -- 7. README: exit codes and suite time ----------------------------------------------------


def test_exit_codes_are_what_the_readme_table_says(tmp_path: Path) -> None:
    text = " ".join(README.read_text("utf-8").split())
    table = text[text.index("**Exit status.**"):]
    table = table[:table.index("## ")]
    # 2: what the command line parser refuses (unknown option, missing argument, a
    # value of the wrong type or out of range) ...
    assert run("sync", "--bogus", check=False).returncode == 2
    assert run("sync", check=False).returncode == 2
    assert run("sync", f"{LOOPBACK}:9", "--timeout", "-1", check=False).returncode == 2
    # ... 1: a value refused once the command uses it (a malformed HOST:PORT)
    proc = run("sync", "--home", tmp_path / "none", "no-port", check=False)
    one_error_line(proc.stderr)
    assert proc.returncode == 1
    assert "HOST:PORT" in table and "out of range" in table, table
    assert "bad value)" not in table, table


@pytest.mark.parametrize("damaged", ["device.crt", "device.key", "root.crt"])
def test_a_damaged_certificate_or_key_is_named_in_one_line(tmp_path: Path, damaged: str) -> None:
    home = District(tmp_path).enrol("phone-a")
    path = home / damaged
    text = path.read_text()
    path.write_text(text[:60] + "####" + text[64:])  # inside the PEM's base64
    with closing(socket.create_server((LOOPBACK, 0))) as listener:  # never reached
        proc = run("sync", "--home", home, f"{LOOPBACK}:{listener.getsockname()[1]}",
                   check=False, timeout=60)
    line = one_error_line(proc.stderr)
    assert proc.returncode != 0 and damaged in line, (proc.returncode, line)


@pytest.mark.parametrize("command", ["sync", "serve"])
def test_sync_and_serve_refuse_an_unknown_config_key_as_the_daemon_does(
        tmp_path: Path, command: str) -> None:
    home = District(tmp_path).enrol("phone-a")
    with (home / "config.toml").open("a") as f:
        f.write("bogus_key = 1\n")
    args = [f"{LOOPBACK}:9"] if command == "sync" else ["--listen", f"{LOOPBACK}:0"]
    proc = run(command, "--home", home, *args, check=False, timeout=60)
    line = one_error_line(proc.stderr)
    assert proc.returncode != 0 and "unknown key 'bogus_key'" in line, (proc.returncode, line)


# -- review: errors that were not one clear line -----------------------------------------


def test_a_connect_timeout_says_it_timed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connect that takes longer than --timeout names the timeout (it used to end in
    an empty colon: trio's TooSlowError has no message)."""
    from typing import Any, cast

    import trio

    from meshsync.net import endpoints
    from meshsync.net.errors import TransportError

    async def never(*args: object) -> None:
        await trio.sleep_forever()

    monkeypatch.setattr(trio, "open_tcp_stream", never)
    with pytest.raises(TransportError) as caught:
        trio.run(endpoints.sync_with, cast(Any, None), LOOPBACK, 17420, 0.0001)
    assert str(caught.value).endswith(f"cannot reach {LOOPBACK}:17420: timed out after "
                                      "0.0001 s"), str(caught.value)


def test_a_bad_daemon_flag_is_named_as_the_flag(template: Path) -> None:
    proc = run("daemon", "--home", template / "phone-a", "--listen", "nonsense",
               check=False, timeout=30)
    line = one_error_line(proc.stderr)
    assert "--listen: expected HOST:PORT" in line and "config" not in line, line
