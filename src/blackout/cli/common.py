"""What every subcommand shares: config options, JSON output, progress on terminals."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any

from ..config import Config
from ..store import DEFAULT_PATH, DuckDBStore, open_store


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """--config FILE and repeatable --set section.key=value."""
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (see `blackout config --defaults`)")
    parser.add_argument(
        "--set",
        metavar="SECTION.KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override one option, e.g. --set ddos.threshold_pps=500 (repeatable)",
    )


def add_db_arg(parser: argparse.ArgumentParser) -> None:
    """--db PATH (default ./var/blackout.duckdb)."""
    parser.add_argument("--db", metavar="PATH", default=DEFAULT_PATH, help=f"store file (default {DEFAULT_PATH})")


def load_config(args: argparse.Namespace) -> Config:
    """The configuration the command runs with."""
    return Config.load(getattr(args, "config", None), getattr(args, "overrides", []))


def store_for(args: argparse.Namespace) -> DuckDBStore:
    """Open the store named by --db."""
    return open_store(args.db)


def print_json(obj: Any) -> None:
    """JSON for machines: one document on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def interactive() -> bool:
    """True when stderr is a terminal: progress bars show there, and stay quiet in pipes and CI."""
    return sys.stderr.isatty() and os.environ.get("CI") is None


def progress(total: int, desc: str, unit: str = "B") -> Any:
    """A tqdm progress bar on terminals, a silent stand-in elsewhere."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not interactive(), leave=False)


def install_stop_signals(stops: list[threading.Event], stopping: str) -> None:
    """First SIGTERM/SIGINT: set every stop event and print ``stopping`` (the command drains, stores and
    exits 0); a second: exit at once with 128 + the signal, as a shell reports a killed job."""

    def handler(signum: int, _frame: Any) -> None:
        if all(stop.is_set() for stop in stops):
            os._exit(128 + signum)
        for stop in stops:
            stop.set()
        print(f"{stopping} (signal again to exit at once)", file=sys.stderr)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
