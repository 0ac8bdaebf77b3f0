"""``meshsync authority ...`` and ``meshsync enroll`` through click's CliRunner."""

from __future__ import annotations

import importlib.util
import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from meshsync.cli import authority

from meshsync.host.home import Home
from meshsync.trust import TrustStore, make_csr, parse_blob

try:
    from meshsync.cli.main import main as cli
except ImportError:  # the records/bundle commands are not there yet: test ours alone
    cli = click.Group("meshsync")
    for _command in authority.COMMANDS:
        cli.add_command(_command)

TPS = "mimika/jila/diloa/tps-003"
STORE_READY = importlib.util.find_spec("meshsync.host.local") is not None


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def run(*args: str | Path, ok: bool = True) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    else:
        assert result.exit_code != 0, result.stdout
        assert result.exception is None or isinstance(result.exception, SystemExit)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("meshsync: error: "), result.stderr
    return result


def run_json(*args: str | Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(run(*args, "--json").stdout)
    return data


def phone(tmp_path: Path, name: str = "phone") -> Path:
    """A device home with a device.csr, as `meshsync init` will leave it."""
    home = Home.create(tmp_path / name)
    home.csr_path.write_bytes(make_csr(home.load_key(), "Officer Contoh"))
    return home.path


@pytest.fixture
def kpu(tmp_path: Path) -> Path:
    home = tmp_path / "kpu"
    data = run_json("authority", "init", "--home", home, "--name", "KPU Mimika")
    assert data["role"] == "admin" and data["scope"] == ""
    return home


@pytest.fixture
def ppk(tmp_path: Path, kpu: Path) -> Path:
    """A district laptop made a sub-authority for mimika/jila."""
    home = Home.create(tmp_path / "ppk").path
    run("authority", "request", "--home", home, "--name", "PPK Jila")
    cert = tmp_path / "jila.crt"
    data = run_json(
        "authority", "delegate", "--home", kpu, home / "authority.csr",
        "--scope", "mimika/jila", "-o", cert,
    )  # fmt: skip
    assert (data["name"], data["scope"], data["issuer"]) == (
        "PPK Jila",
        "mimika/jila",
        "KPU Mimika",
    )
    run("authority", "install", "--home", home, cert)
    return home


def test_init_writes_the_authority_and_its_own_device(kpu: Path) -> None:
    for name in ("authority.key", "authority.crt", "root.crt", "device.crt", "device.key"):
        assert (kpu / name).exists(), name
    assert stat.S_IMODE((kpu / "authority.key").stat().st_mode) == 0o600
    chain = parse_blob((kpu / "device.crt").read_bytes())
    assert [c.is_root for c in chain] == [False, True]
    device = Home.open(kpu).load_key()
    assert chain[0].device_key == device.public_key
    store = TrustStore([(kpu / "root.crt").read_bytes()])
    store.add((kpu / "device.crt").read_bytes())
    store.authorize_change(device.public_key, "anything/at/all", 1, now_ms())


def test_init_twice_is_refused(kpu: Path) -> None:
    result = run("authority", "init", "--home", kpu, "--name", "Again", ok=False)
    assert "already holds an authority" in result.stderr
    result = run("authority", "request", "--home", kpu, "--name", "Again", ok=False)
    assert "is the root authority" in result.stderr


def test_init_refuses_an_enrolled_home(tmp_path: Path, kpu: Path) -> None:
    dev = phone(tmp_path)
    cert = tmp_path / "phone.crt"
    run(
        "authority", "issue", "--home", kpu, dev / "device.csr",
        "--role", "pantarlih", "--scope", TPS, "-o", cert,
    )  # fmt: skip
    run("enroll", "--home", dev, cert)
    result = run("authority", "init", "--home", dev, "--name", "Rogue", ok=False)
    assert "already enrolled" in result.stderr


def test_laptop_enrols_itself_as_gateway(tmp_path: Path, ppk: Path) -> None:
    home = Home.open(ppk)
    home.csr_path.write_bytes(make_csr(home.load_key(), "Laptop PPK Jila"))
    cert = tmp_path / "laptop.crt"
    run(
        "authority", "issue", "--home", ppk, home.csr_path,
        "--role", "gateway", "--scope", "mimika/jila", "-o", cert,
    )  # fmt: skip
    data = run_json("enroll", "--home", ppk, cert)
    assert (data["role"], data["scope"], data["issuer"]) == ("gateway", "mimika/jila", "PPK Jila")


def test_issue_at_the_root_and_enroll(tmp_path: Path, kpu: Path) -> None:
    dev = phone(tmp_path)
    cert = tmp_path / "phone.crt"
    data = run_json(
        "authority", "issue", "--home", kpu, dev / "device.csr",
        "--role", "pantarlih", "--scope", TPS, "--days", "30", "-o", cert,
    )  # fmt: skip
    key = Home.open(dev).load_key()
    assert data["device_id"] == key.device_id
    assert (data["role"], data["scope"], data["issuer"]) == ("pantarlih", TPS, "KPU Mimika")
    enrolled = run_json("enroll", "--home", dev, cert)
    assert enrolled["device_id"] == key.device_id
    assert (dev / "root.crt").read_bytes() == (kpu / "root.crt").read_bytes()
    assert len(parse_blob((dev / "device.crt").read_bytes())) == 2


def test_district_flow_through_a_sub_authority(tmp_path: Path, kpu: Path, ppk: Path) -> None:
    assert stat.S_IMODE((ppk / "authority.key").stat().st_mode) == 0o600
    assert (ppk / "root.crt").read_bytes() == (kpu / "root.crt").read_bytes()
    dev = phone(tmp_path)
    cert = tmp_path / "phone.crt"
    run(
        "authority", "issue", "--home", ppk, dev / "device.csr",
        "--role", "pantarlih", "--scope", TPS, "-o", cert,
    )  # fmt: skip
    chain = parse_blob(cert.read_bytes())
    assert [c.name for c in chain] == ["Officer Contoh", "PPK Jila", "KPU Mimika"]
    text = run("enroll", "--home", dev, cert).stdout
    assert "issuer: PPK Jila" in text
    store = TrustStore([(dev / "root.crt").read_bytes()])
    store.add((dev / "device.crt").read_bytes())
    key = Home.open(dev).load_key()
    store.authorize_change(key.public_key, TPS, 1, now_ms())


def test_sub_authority_cannot_issue_outside_its_scope(tmp_path: Path, ppk: Path) -> None:
    dev = phone(tmp_path)
    result = run(
        "authority", "issue", "--home", ppk, dev / "device.csr",
        "--role", "pantarlih", "--scope", "mimika/agimuga", "-o", tmp_path / "x.crt",
        ok=False,
    )  # fmt: skip
    assert "outside" in result.stderr
    assert not (tmp_path / "x.crt").exists()


def test_sub_authority_cannot_delegate(tmp_path: Path, ppk: Path) -> None:
    other = Home.create(tmp_path / "other").path
    run("authority", "request", "--home", other, "--name", "PPK Diloa")
    result = run(
        "authority", "delegate", "--home", ppk, other / "authority.csr",
        "--scope", "mimika/jila/diloa", "-o", tmp_path / "d.crt", ok=False,
    )  # fmt: skip
    assert "only the root" in result.stderr


def test_delegate_refuses_a_device_request(tmp_path: Path, kpu: Path) -> None:
    dev = phone(tmp_path)
    result = run(
        "authority", "delegate", "--home", kpu, dev / "device.csr",
        "--scope", "mimika", "-o", tmp_path / "d.crt", ok=False,
    )  # fmt: skip
    assert "not a sub-authority request" in result.stderr


def test_enroll_refuses_another_devices_certificate(tmp_path: Path, kpu: Path) -> None:
    dev, other = phone(tmp_path, "a"), phone(tmp_path, "b")
    cert = tmp_path / "b.crt"
    run(
        "authority", "issue", "--home", kpu, other / "device.csr",
        "--role", "pantarlih", "--scope", TPS, "-o", cert,
    )  # fmt: skip
    result = run("enroll", "--home", dev, cert, ok=False)
    assert "not this device" in result.stderr
    assert not (dev / "device.crt").exists()


def test_enroll_refuses_a_different_authority(tmp_path: Path, kpu: Path) -> None:
    other = tmp_path / "other-kpu"
    run("authority", "init", "--home", other, "--name", "KPU Nabire")
    dev = phone(tmp_path)
    first, second = tmp_path / "1.crt", tmp_path / "2.crt"
    for home, cert in ((kpu, first), (other, second)):
        run(
            "authority", "issue", "--home", home, dev / "device.csr",
            "--role", "pantarlih", "--scope", TPS, "-o", cert,
        )  # fmt: skip
    run("enroll", "--home", dev, first)
    result = run("enroll", "--home", dev, second, ok=False)
    assert "KPU Nabire" in result.stderr and "root.crt" in result.stderr


def test_enroll_refuses_garbage(tmp_path: Path) -> None:
    dev = phone(tmp_path)
    bad = tmp_path / "bad.crt"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    line = run("enroll", "--home", dev, bad, ok=False).stderr
    assert f"{bad} is not a valid PEM certificate file: " in line


def test_enroll_names_a_pem_file_with_bad_base64_in_one_clause(tmp_path: Path) -> None:
    dev = phone(tmp_path)
    bad = tmp_path / "bad.crt"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB!!!!\n-----END CERTIFICATE-----\n")
    line = run("enroll", "--home", dev, bad, ok=False).stderr.strip()
    assert line.startswith(f"meshsync: error: {bad} is not a valid PEM certificate file: "
                           "bad base64"), line
    assert "https://" not in line and "InvalidData" not in line


def test_a_damaged_root_crt_is_named_with_its_remedy(tmp_path: Path, kpu: Path) -> None:
    dev = phone(tmp_path)
    cert = tmp_path / "phone.crt"
    run("authority", "issue", "--home", kpu, dev / "device.csr", "--role", "pantarlih",
        "--scope", TPS, "-o", cert)
    run("enroll", "--home", dev, cert)
    (dev / "root.crt").write_text("junk\n")
    line = run("put", "--home", dev, "voters", "v-1", "nama=X", ok=False).stderr
    assert f"{dev / 'root.crt'}" in line and "meshsync enroll" in line, line
    run("enroll", "--home", dev, cert)  # the remedy works
    run("put", "--home", dev, "--partition", TPS, "voters", "v-1", "nama=X")


def test_install_refuses_a_certificate_for_another_key(tmp_path: Path, kpu: Path) -> None:
    laptop = Home.create(tmp_path / "laptop").path
    run("authority", "request", "--home", laptop, "--name", "PPK Jila")
    other = Home.create(tmp_path / "other").path
    run("authority", "request", "--home", other, "--name", "PPK Jita")
    cert = tmp_path / "jita.crt"
    run(
        "authority", "delegate", "--home", kpu, other / "authority.csr",
        "--scope", "mimika/jita", "-o", cert,
    )  # fmt: skip
    assert "for this home's key" in run("authority", "install", "--home", laptop, cert,
                                        ok=False).stderr  # fmt: skip


def test_revoke_writes_a_revocation(tmp_path: Path, kpu: Path) -> None:
    dev = phone(tmp_path)
    cert = tmp_path / "phone.crt"
    run(
        "authority", "issue", "--home", kpu, dev / "device.csr",
        "--role", "pantarlih", "--scope", TPS, "-o", cert,
    )  # fmt: skip
    key = Home.open(dev).load_key()
    out = tmp_path / "lost-phone.rev"
    data = run_json("authority", "revoke", "--home", kpu, key.device_id, "--after-seq", "57",
                    "-o", out)  # fmt: skip
    assert data["after_seq"] == 57
    assert data["stored"] is STORE_READY
    store = TrustStore([(kpu / "root.crt").read_bytes()])
    store.add(cert.read_bytes())
    assert store.add(out.read_bytes()) == "revocation"
    assert store.revocation_for(key.public_key) == 57
    with pytest.raises(Exception, match="revoked after seq 57"):
        store.authorize_change(key.public_key, TPS, 58, now_ms())


def test_revoke_refuses_a_bad_device_id(kpu: Path) -> None:
    assert "not a device id" in run("authority", "revoke", "--home", kpu, "nope!",
                                    ok=False).stderr  # fmt: skip


def test_commands_need_an_authority(tmp_path: Path) -> None:
    dev = phone(tmp_path)
    result = run(
        "authority", "issue", "--home", dev, dev / "device.csr",
        "--role", "pantarlih", "--scope", TPS, "-o", tmp_path / "x.crt", ok=False,
    )  # fmt: skip
    assert "no authority key" in result.stderr


def test_credentials_reach_the_node_store(tmp_path: Path, kpu: Path) -> None:
    """enroll and revoke hand credentials to the node (meshsync.host.local)."""
    io_local = pytest.importorskip("meshsync.host.local", reason="io_local not ready")
    if not hasattr(io_local, "open_node"):
        pytest.skip("io_local not ready")
    dev = phone(tmp_path)
    cert = tmp_path / "phone.crt"
    run(
        "authority", "issue", "--home", kpu, dev / "device.csr",
        "--role", "pantarlih", "--scope", TPS, "-o", cert,
    )  # fmt: skip
    assert run_json("enroll", "--home", dev, cert)["stored"] is True
    key = Home.open(dev).load_key()
    assert run_json("authority", "revoke", "--home", kpu, key.device_id)["stored"] is True


def test_put_on_a_key_held_only_in_another_partition_hints_at_partition(
        tmp_path: Path, kpu: Path) -> None:
    """The edit goes to the record's partition; refused there, the error says so and
    names --partition."""
    homes = {}
    for name, tps in (("a", TPS), ("b", "mimika/jila/diloa/tps-004")):
        home = Home.create(tmp_path / name, partition=tps)
        home.csr_path.write_bytes(make_csr(home.load_key(), f"Officer {name}"))
        run("authority", "issue", "--home", kpu, home.csr_path, "--role", "pantarlih",
            "--scope", tps, "-o", tmp_path / f"{name}.crt")
        run("enroll", "--home", home.path, tmp_path / f"{name}.crt")
        homes[name] = home.path
    run("put", "--home", homes["a"], "voters", "v-1", "nama=Yosina")
    run("bundle", "export", "--clear", "--home", homes["a"], "-o", tmp_path / "a.bundle")
    run("bundle", "import", "--home", homes["b"], tmp_path / "a.bundle")
    line = run("put", "--home", homes["b"], "voters", "v-1", "nama=X", ok=False).stderr
    assert "may not write here" in line and f"exists only in partition {TPS}" in line
    assert "--partition" in line, line


def test_get_and_delete_explain_partition_in_their_help() -> None:
    for command in ("get", "delete"):
        text = CliRunner().invoke(cli, [command, "--help"]).stdout
        assert "The record's partition" in " ".join(text.split()), text


# -- review, smaller: text output -------------------------------------------------------


def test_revoke_without_after_seq_says_every_change_is_refused(tmp_path: Path,
                                                               kpu: Path) -> None:
    dev = phone(tmp_path)
    run("authority", "issue", "--home", kpu, dev / "device.csr", "--role", "pantarlih",
        "--scope", TPS, "-o", tmp_path / "phone.crt")
    shown = run("authority", "revoke", "--home", kpu,
                Home.open(dev).load_key().device_id).stdout
    assert "after_seq: none (every change of the device is refused)" in shown, shown


def test_key_value_lines_show_maps_and_lists_without_python_reprs() -> None:
    assert authority._text({"mimika/jila/diloa/tps-003": 6, "x": [1, 2]}) == \
        "mimika/jila/diloa/tps-003 6, x 1, 2"
    assert authority._text({}) == "none"


def test_sync_counts_changes_in_words() -> None:
    from meshsync.cli.sync import _sync_line

    line = {"changes_received": 0, "duplicates": 0, "bytes_sent": 1, "bytes_received": 1,
            "seconds": 0.1, "converged": True}
    assert [_sync_line({**line, "changes_sent": n}).split(",")[0] for n in (1, 0, 2)] == \
        ["sent 1 change", "sent 0 changes", "sent 2 changes"]


def test_sync_json_to_an_unreachable_peer_prints_a_summary_with_the_error(
        kpu: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = CliRunner().invoke(cli, ["sync", "--home", str(kpu), f"127.0.0.1:{port}",
                                      "--json"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["error"].startswith(f"connect: cannot reach 127.0.0.1:{port}")
    assert summary["converged"] is False


def test_a_bundle_from_another_authority_says_its_credentials_verify_nothing(
        tmp_path: Path, kpu: Path) -> None:
    other = tmp_path / "other"
    run("authority", "init", "--home", other, "--name", "KPU Lain")
    stranger = Home.create(tmp_path / "stranger", partition=TPS)
    stranger.csr_path.write_bytes(make_csr(stranger.load_key(), "Orang Lain"))
    run("authority", "issue", "--home", other, stranger.csr_path, "--role", "pantarlih",
        "--scope", TPS, "-o", tmp_path / "s.crt")
    run("enroll", "--home", stranger.path, tmp_path / "s.crt")
    run("put", "--home", stranger.path, "voters", "v-1", "nama=A")
    run("bundle", "export", "--clear", "--home", stranger.path, "-o", tmp_path / "s.bundle")
    result = CliRunner().invoke(cli, ["bundle", "import", "--home", str(kpu),
                                      str(tmp_path / "s.bundle")])
    first = result.stdout.splitlines()[0]
    assert "1 refused" in first and "1 new credential (1 from an authority this node " \
        "does not trust" in first, first


def test_sync_refuses_a_share_without_the_devices_own_partition(tmp_path: Path,
                                                                kpu: Path) -> None:
    """Review item 1: a phone whose ``share`` leaves out its own partition would never
    send its edits; the setting is refused by name before anything is dialled."""
    dev = phone(tmp_path)
    run("authority", "issue", "--home", kpu, dev / "device.csr", "--role", "pantarlih",
        "--scope", TPS, "-o", tmp_path / "phone.crt")
    run("enroll", "--home", dev, tmp_path / "phone.crt")
    config = dev / "config.toml"
    config.write_text(config.read_text() + '\nshare = "mimika/jila/diloa/tps-001"\n')
    line = run("sync", "--home", dev, "127.0.0.1:9", ok=False).stderr
    assert "share = 'mimika/jila/diloa/tps-001' does not contain this device's own " \
        f"partition '{TPS}'" in line, line
