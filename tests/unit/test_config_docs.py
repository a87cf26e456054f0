"""config.example.toml and docs/configuration.md stay in step with the Settings model."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from s3sync.config import LEGACY_ENV, Settings, load_settings
from s3sync.model import Shard

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"
DOCS = ROOT / "docs" / "configuration.md"

SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in Settings.model_fields.items()
}
ALL_KEYS = [(sec, key) for sec, model in SECTIONS.items() for key in model.model_fields]
# Keys with a real default are set in the example; the rest (default None) are commented out.
SET_KEYS = [(s, k) for s, k in ALL_KEYS if SECTIONS[s].model_fields[k].default is not None]


def _example() -> dict[str, Any]:
    with EXAMPLE.open("rb") as fh:
        return tomllib.load(fh)


def _commented_keys() -> dict[str, dict[str, str]]:
    """`# key = value` lines per section: optional keys shown as examples."""
    out: dict[str, dict[str, str]] = {}
    section = ""
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if m := re.fullmatch(r"\[(\w+)\]\s*", line):
            section = m.group(1)
        elif m := re.fullmatch(r"#\s*([a-z_]+)\s*=\s*(.+)", line):
            out.setdefault(section, {})[m.group(1)] = m.group(2)
    return out


def _doc_rows() -> dict[str, dict[str, str]]:
    """Table rows of docs/configuration.md per ``## `[section]` `` heading."""
    out: dict[str, dict[str, str]] = {}
    section = ""
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if m := re.fullmatch(r"## `\[(\w+)\]`\s*", line):
            section = m.group(1)
        elif section and (m := re.match(r"\|\s*`(\w+)`\s*\|", line)):
            out.setdefault(section, {})[m.group(1)] = line
    return out


def _toml_literal(value: Any) -> str:
    """How the docs table spells a default (a TOML literal)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Shard):
        return f'"{value.spec}"'
    return f'"{value}"'


class TestExampleCoversModel:
    """Every model field appears in config.example.toml, set or as a commented example."""

    def test_sections_match(self) -> None:
        assert set(_example()) == set(SECTIONS)

    @pytest.mark.parametrize(("section", "key"), ALL_KEYS)
    def test_key_present(self, section: str, key: str) -> None:
        present = _example().get(section, {})
        commented = _commented_keys().get(section, {})
        assert key in present or key in commented, f"{section}.{key} missing from example"

    def test_no_extra_keys(self) -> None:
        for section, values in _example().items():
            assert set(values) <= set(SECTIONS[section].model_fields), section
        for section, values in _commented_keys().items():
            assert set(values) <= set(SECTIONS[section].model_fields), section

    def test_optional_keys_are_commented_out(self) -> None:
        """Keys whose default is None are shown, not set."""
        for section, model in SECTIONS.items():
            for key, field in model.model_fields.items():
                if field.default is None:
                    assert key not in _example()[section], f"{section}.{key}"
                    assert key in _commented_keys().get(section, {}), f"{section}.{key}"


class TestExampleValues:
    """Uncommented values equal the built-in defaults, and commented examples are valid."""

    @pytest.mark.parametrize(("section", "key"), SET_KEYS)
    def test_value_is_default(self, section: str, key: str) -> None:
        values = _example()[section]
        assert key in values, f"{section}.{key} has a default: set it, uncommented"
        model = SECTIONS[section]
        parsed = getattr(model.model_validate({key: values[key]}), key)
        assert parsed == model.model_fields[key].default

    def test_commented_examples_validate(self) -> None:
        for section, values in _commented_keys().items():
            model = SECTIONS[section]
            doc = tomllib.loads("\n".join(f"{k} = {v}" for k, v in values.items()))
            # tls_cert/tls_key must come together, which the example does.
            model.model_validate(doc)


class TestExampleLoads:
    """The example file is a working configuration on its own."""

    def test_load_settings(self) -> None:
        settings = load_settings(EXAMPLE, environ={})
        assert settings == load_settings(None, environ={})


class TestConfigurationDoc:
    """docs/configuration.md has a row per key with its default and env names."""

    @pytest.mark.parametrize(("section", "key"), ALL_KEYS)
    def test_row(self, section: str, key: str) -> None:
        row = _doc_rows().get(section, {}).get(key)
        assert row is not None, f"{section}.{key} not documented in {DOCS.name}"
        assert f"`S3SYNC_{section.upper()}__{key.upper()}`" in row
        default = SECTIONS[section].model_fields[key].default
        if default is None:
            assert "*unset*" in row
        else:
            assert f"`{_toml_literal(default)}`" in row

    @pytest.mark.parametrize("legacy", sorted(LEGACY_ENV))
    def test_legacy_names(self, legacy: str) -> None:
        section, key, _ = LEGACY_ENV[legacy]
        row = _doc_rows()[section][key]
        assert f"`{legacy}`" in row

    def test_no_stale_rows(self) -> None:
        for section, rows in _doc_rows().items():
            assert section in SECTIONS
            assert set(rows) <= set(SECTIONS[section].model_fields), section
