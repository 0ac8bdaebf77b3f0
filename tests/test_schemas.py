"""Schemas register through the ``meshsync.schemas`` entry point group
(meshsync.host.local.SCHEMA_GROUP): coklit is declared by pyproject.toml, another
distribution can add its own, and an unknown name is a clear error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from meshsync.host.home import Home
from meshsync.host.local import SCHEMA_GROUP, installed_schemas, open_node, schema_register
from meshsync.model.errors import UsageError

P = "mimika/jila/diloa/tps-003"


def _home(tmp_path: Path, schema: str | None) -> Path:
    home = Home.create(tmp_path / "phone", partition=P)
    if schema is not None:
        home.write_config({**home.config(), "schema": schema})
    return home.path


def test_coklit_is_installed_through_the_entry_point() -> None:
    entry = installed_schemas()["coklit"]
    assert entry.group == SCHEMA_GROUP and entry.value == "meshsync.coklit:register"
    from meshsync.coklit import register

    assert schema_register("coklit") is register


def test_a_coklit_home_gets_the_voters_validator(tmp_path: Path) -> None:
    with open_node(_home(tmp_path, "coklit")) as node:
        assert "voters" in node.validators
    with open_node(_home(tmp_path / "plain", None)) as node:
        assert node.validators == {}


def test_an_unknown_schema_names_the_installed_ones(tmp_path: Path) -> None:
    path = _home(tmp_path, "pemilu")
    with pytest.raises(UsageError) as info, open_node(path):
        pass
    message = str(info.value)
    assert "config.toml" in message and "unknown schema 'pemilu'" in message
    assert "(installed: coklit" in message


def _install_plugin(root: Path, value: str) -> None:
    """A distribution on ``root`` declaring schema ``census`` as ``value``."""
    (root / "census_schema.py").write_text(
        "def register(node):\n"
        "    node.register_validator('households', lambda change, fields: None)\n")
    info = root / "census_schema-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: census-schema\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{SCHEMA_GROUP}]\ncensus = {value}\n")


def test_another_distribution_adds_a_schema(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = tmp_path / "site"
    plugin.mkdir()
    _install_plugin(plugin, "census_schema:register")
    monkeypatch.syspath_prepend(str(plugin))
    monkeypatch.delitem(sys.modules, "census_schema", raising=False)
    assert {"coklit", "census"} <= set(installed_schemas())
    with open_node(_home(tmp_path, "census")) as node:
        assert set(node.validators) == {"households"}


def test_a_schema_that_does_not_load_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = tmp_path / "site"
    plugin.mkdir()
    _install_plugin(plugin, "census_schema:no_such_function")
    monkeypatch.syspath_prepend(str(plugin))
    with pytest.raises(UsageError, match="'census' is installed but does not load"):
        schema_register("census")
