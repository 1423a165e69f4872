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


@pytest.fixture(scope="session")
def kp_scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Dec-2014 North Korea scenario, generated once per test session by blackout's own generator."""
    from blackout.scenario.kp2014 import plan
    from blackout.scenario.render import render

    out = tmp_path_factory.mktemp("kp-2014")
    render(
        plan(),
        out,
        str(DATA / "mrt/routeviews.route-views.jinx.ribs.1401487200.bz2"),
        str(DATA / "asn/asnames.json.gz"),
        seed=20141222,
    )
    return out
