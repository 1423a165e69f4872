"""Inputs the fuzzer (fuzz/harness.py) once crashed on, kept under tests/data/fuzz/ as TARGET-*.

Each is replayed through the same harness function libFuzzer calls: only
BlackoutError may escape.  The config case is also checked for its message.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from blackout.config import Config
from blackout.errors import ConfigError
from conftest import DATA

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import harness

FOUND = sorted((DATA / "fuzz").glob("*-*"))


def test_regressions_are_kept() -> None:
    assert FOUND, "tests/data/fuzz/ holds the inputs fuzzing found"


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.name)
def test_found_input_only_raises_blackout_errors(path: Path) -> None:
    target = path.name.split("-", 1)[0]
    assert target in harness.TARGETS
    harness.one_input(target)(path.read_bytes())


def test_config_not_utf8_is_a_config_error() -> None:
    """tomllib's UnicodeDecodeError escaped Config.load before (fuzz: config target)."""
    with pytest.raises(ConfigError, match="not UTF-8 at byte 70"):
        Config.load(str(DATA / "fuzz/config-not-utf8.toml"))


def test_address_fields_of_another_length_are_stepped_over() -> None:
    """A v9 template giving sourceIPv6Address 4 bytes made a 1-D address column that Arrow refused
    (fuzz: netflow target); now the field is skipped and the record kept with its other fields."""
    import numpy as np

    from blackout.sources import DATAGRAM_DECODERS, DecodeContext

    (gram,) = harness.unframe((DATA / "fuzz/netflow-ipv6-field-of-4-bytes.bin").read_bytes())
    ctx = DecodeContext()
    batch = DATAGRAM_DECODERS["netflow"].decode([gram], ["x"], np.zeros(1, np.int64), ctx)
    assert batch.num_rows == 1
    assert batch.column("dst_addr")[0].as_py() == bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 2])
    assert batch.column("src_addr")[0].as_py() == bytes(16)
    assert batch.column("bytes")[0].as_py() == 100
