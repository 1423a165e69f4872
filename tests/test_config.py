"""Configuration: TOML file, --set overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from blackout.config import Config, defaults_toml, parse_override
from blackout.engine import EngineConfig
from blackout.errors import ConfigError


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_text("[engine]\ntick_s = 2\nlateness_s = 10.5\n")
    config = Config.load(str(path), ["engine.tick_s=5", "engine.batch_size=1000"])
    engine = config.section("engine", EngineConfig)
    assert (engine.tick_s, engine.lateness_s, engine.batch_size) == (5.0, 10.5, 1000)


def test_override_values_are_toml() -> None:
    assert parse_override("ddos.threshold_pps=500") == ("ddos", "threshold_pps", 500)
    assert parse_override("ddos.networks=['10.0.0.0/8']") == ("ddos", "networks", ["10.0.0.0/8"])
    assert parse_override("store.path=./x.duckdb") == ("store", "path", "./x.duckdb")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("engine.tick=1", "has no option 'tick'"),
        ("engine.tick_s=fast", "expected float"),
        ("nodot=1", "section.key=value"),
        ("nosuchsection.x=1", "unknown configuration section"),
    ],
)
def test_bad_values_name_the_key(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.load(None, [item]).section("engine", EngineConfig)


def test_broken_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[engine\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        Config.load(str(path))


def test_defaults_document_every_option() -> None:
    text = defaults_toml()
    assert "[engine]" in text and "tick_s = 1.0" in text and "lateness_s = 120.0" in text
