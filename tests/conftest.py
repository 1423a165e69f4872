"""Shared test fixtures: where the bundled real data lives, and helpers to find reference tools."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The bundled real data (see tests/data/PROVENANCE.md)."""
    return DATA


def need_tool(name: str) -> str:
    """Path of a reference tool that `make test` installs; fail (not skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make test`, which apt-gets it")
    return path
