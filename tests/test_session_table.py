"""The session's transition table (meshsync.protocol.states) and its boundaries.

* docs/protocol.md shows the diagram drawn from the table as it is now;
* every ``(state, message)`` pair missing from the table is a protocol error;
* the session module imports nothing from the store or the node (docs/architecture.md
  §3: the session touches no store; its owner, meshsync.protocol.peer, does).
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from meshsync.protocol import diagram
from meshsync.protocol import frames as fr
from meshsync.protocol import machine as machine_module
from meshsync.protocol import messages as msg
from meshsync.protocol import session as session_module
from meshsync.protocol.events import (
    ChangesWanted,
    CredentialsReceived,
    EndWanted,
    HoldingsWanted,
)
from meshsync.protocol.meta import Holdings
from meshsync.protocol.session import SessionConfig, SessionError, SyncSession
from meshsync.protocol.states import LIVE, TRANSITIONS, State

ROOT = Path(__file__).resolve().parent.parent
CONFIG = SessionConfig(mesh_id="kpu-mimika", share_scope="mimika/jila")
KEY = b"k" * 32

#: One well-formed message of each type (the table is consulted after decoding).
SAMPLES: dict[type[msg.Message], list[Any]] = {
    msg.Hello: [fr.HELLO, {"proto": fr.PROTOCOL_VERSION, "mesh": "kpu-mimika",
                           "device": b"p" * 32, "role": "pantarlih", "scope": "mimika/jila",
                           "clock_ms": 0, "zlib": [1]}],
    msg.Summary: [fr.SUMMARY, [b"\x00" * 16] * 3, 0],
    msg.VersionVectors: [fr.VV, None, None, None],
    msg.Credentials: [fr.CRED, []],
    msg.Receipts: [fr.RCPT, []],
    msg.Changes: [fr.CHANGES, 1, []],
    msg.Ack: [fr.ACK, 1],
    msg.SentAll: [fr.SENT_ALL, 0],
    msg.Fin: [fr.FIN, b"\x00" * 16],
    msg.Error: [fr.ERROR, "protocol", "test"],
}


TOOL = ROOT / "tools" / "session_diagram.py"


def _tool() -> ModuleType:
    """tools/session_diagram.py, loaded as a module (tools/ is no package)."""
    spec = importlib.util.spec_from_file_location("session_diagram", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_protocol_doc_shows_the_table_as_it_is() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert diagram.update(doc) == doc, f"run: {diagram.COMMAND}"
    assert _tool().main([str(ROOT / "docs" / "protocol.md"), "--check"]) == 0


def test_diagram_check_notices_a_stale_doc(tmp_path: Path) -> None:
    stale = tmp_path / "protocol.md"
    stale.write_text(f"# Sync protocol\n\n{diagram.BEGIN}\nold\n{diagram.END}\n")
    tool = _tool()
    assert tool.main([str(stale), "--check"]) == 1
    assert "old" in stale.read_text()
    assert tool.main([str(stale)]) == 0
    assert tool.main([str(stale), "--check"]) == 0
    assert "recv sent-all" in stale.read_text()


def test_the_diagram_tool_checks_the_repository_doc_from_any_directory(
        tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(TOOL), "--check"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_every_message_decodes_back_to_its_array() -> None:
    for kind, raw in SAMPLES.items():
        message = msg.decode(list(raw))
        assert type(message) is kind and message.to_wire() == raw


@pytest.mark.parametrize("state", LIVE)
@pytest.mark.parametrize("kind", list(SAMPLES), ids=lambda k: k.__name__)
def test_a_pair_missing_from_the_table_is_a_protocol_error(
        state: State, kind: type[msg.Message]) -> None:
    if (state, kind) in TRANSITIONS:
        return
    session = SyncSession(CONFIG, device=KEY, now_ms=0)
    session.data_to_send()
    session.state = state
    with pytest.raises(SessionError, match=f"unexpected {fr.NAMES[kind.kind]} while {state}"):
        session.receive_data(fr.encode_frame(SAMPLES[kind]), 0)
    assert session.state == State.FAILED
    error = fr.FrameReader()
    error.feed(session.data_to_send())
    got = error.next_message()
    assert got is not None and got[0][:2] == [fr.ERROR, "protocol"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", [session_module, machine_module, msg, diagram],
                         ids=lambda m: m.__name__)
def test_the_state_machine_imports_no_store_and_no_node(module: Any) -> None:
    imported = _imports(Path(module.__file__))
    touching = {name for name in imported
                if name == "meshsync.store" or name.startswith("meshsync.store.")
                or name.startswith("meshsync.replica.node")
                or name in ("meshsync.host", "meshsync.net")}
    assert not touching, f"{module.__name__} imports {sorted(touching)}"


def _answer(session: SyncSession, held: Holdings, kept: list[bytes]) -> None:
    """A node-less owner: plain data for every request (what a Peer reads from a node)."""
    while (event := session.next_event()) is not None:
        if isinstance(event, HoldingsWanted):
            session.hold(held)
        elif isinstance(event, ChangesWanted):
            session.send_changes(iter(()))
        elif isinstance(event, CredentialsReceived):
            kept += event.blobs
            session.stored(len(event.blobs), [])
        elif isinstance(event, EndWanted):
            session.conclude(held.vv, held.credentials + kept, None)


def test_two_bare_state_machines_sync_with_plain_data_and_no_node() -> None:
    """The session needs no node, store or thread: an owner answering with plain data
    runs a whole session (here: B holds a credential A lacks)."""
    cred = b"\x01certificate"
    held = (Holdings.build([], [], [], []), Holdings.build([], [], [cred], []))
    kept: tuple[list[bytes], list[bytes]] = ([], [])
    a, b = (SyncSession(CONFIG, device=bytes([i]) * 32, now_ms=0) for i in (1, 2))
    sessions = (a, b)
    for _ in range(20):
        for me, session in enumerate(sessions):
            data = session.data_to_send()
            if data:
                sessions[1 - me].receive_data(data, 0)
                _answer(sessions[1 - me], held[1 - me], kept[1 - me])
            _answer(session, held[me], kept[me])
    assert a.state == b.state == State.DONE
    assert a.summary.converged and b.summary.converged
    assert kept == ([cred], []) and a.summary.credentials_received == 1
    assert b.summary.credentials_sent == 1
