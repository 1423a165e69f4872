"""From file names to engine sources, and from a configuration to detectors.

This is the glue `replay`, `demo` and `collect` share: it opens files, detects
their formats from content, wraps each decoder's batches as an engine Source,
and turns a damaged or unknown file into a recorded failure (one line, naming
the file) while the other files go on.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa

from .config import Config
from .detect.base import Detector
from .detect.ddos import DdosDetector
from .detect.ddos_config import DdosConfig
from .detect.outage import OutageDetector, outage_detectors
from .detect.telescope import telescope_detectors
from .engine import Engine, EngineConfig, RunStats, Source
from .enrich.enricher import EnrichConfig, RoutingEnricher
from .enrich.routing import RoutingConfig, RoutingState
from .errors import BlackoutError
from .explain.attributor import AttackTap, Attributor
from .explain.verdict import VerdictConfig
from .model import Kind
from .serve.alerts import router_for
from .sources import FILE_DECODERS, DecodeContext, detect_format, read_input
from .store import DuckDBStore, StoreConfig


@dataclasses.dataclass
class FileFailure:
    """A file that could not be read to its end, and why (the CLI prints one line each)."""

    path: str
    message: str


@dataclasses.dataclass
class Inputs:
    """The files of one command: their sources, shared decoder state, and what failed."""

    ctx: DecodeContext
    failures: list[FileFailure] = dataclasses.field(default_factory=list)
    formats: dict[str, str] = dataclasses.field(default_factory=dict)  # path -> format name
    done_bytes: int = 0
    on_file_done: Callable[[str, int], None] | None = None

    def open(self, paths: list[str], fmt: str = "auto") -> list[Source]:
        """One Source per readable file (in the order given); unreadable ones become failures."""
        sources = []
        for path in paths:
            try:
                data = read_input(path, self.ctx.errors)
                name = detect_format(path, data) if fmt == "auto" else fmt
                if name not in FILE_DECODERS:
                    raise BlackoutError(f"{path}: no decoder for format {name!r}")
            except BlackoutError as exc:
                self.failures.append(FileFailure(path, str(exc)))
                self._done(path)
                continue
            self.formats[path] = name
            decoder = FILE_DECODERS[name]
            sources.append(Source(path, decoder.kind, self._batches(path, name, data), origin=name))
        return sources

    def _batches(self, path: str, name: str, data: bytes) -> Iterator[pa.RecordBatch]:
        """The decoder's batches; a decode error ends this file (recorded), never the run."""
        try:
            yield from FILE_DECODERS[name].read(path, data, self.ctx)
        except BlackoutError as exc:
            message = str(exc)
            self.failures.append(FileFailure(path, message if message.startswith(path) else f"{path}: {message}"))
        finally:
            self._done(path)

    def _done(self, path: str) -> None:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        self.done_bytes += size
        if self.on_file_done is not None:
            self.on_file_done(path, size)


def build_detectors(config: Config) -> list[Detector]:
    """The detectors a run uses, configured from their sections, sharing one routing state.

    Order matters: the routing tracker applies each tick's route elements first,
    so the DDoS detector's enrichment (prefix, origin AS, country of addresses) and
    the outage detector's BGP signal see the routing of that very tick.  The outage
    detector is wrapped by the attributor, which fills each outage's verdict from the
    attacks the tap passed through and the watched entities' route history.
    """
    state = RoutingState(config.section("routing", RoutingConfig))
    enricher = RoutingEnricher.from_config(config.section("enrich", EnrichConfig), state)
    tracker, outage = outage_detectors(config, enricher)
    assert isinstance(outage, OutageDetector)
    attacks = AttackTap(DdosDetector(config.section("ddos", DdosConfig), enricher))
    attributor = Attributor(outage, attacks, enricher, config.section("explain", VerdictConfig))
    tick_s = config.section("engine", EngineConfig).tick_s
    return [tracker, attacks, attributor, *telescope_detectors(config, enricher, tick_s)]


def flow_keeper(store: DuckDBStore) -> Callable[[Source, pa.RecordBatch], None]:
    """An engine on_batch hook that appends flow batches to the store (for [store] keep_flows)."""

    def keep(source: Source, batch: pa.RecordBatch) -> None:
        if source.kind is Kind.FLOW:
            store.append_flows(batch)

    return keep


def until_stopped(
    batches: Iterable[pa.RecordBatch], stop: threading.Event, cut: list[bool]
) -> Iterator[pa.RecordBatch]:
    """The batches until `stop` is set (a signal): the source then ends early and says so in `cut`."""
    for batch in batches:
        if stop.is_set():
            cut.append(True)
            return
        yield batch


def replay(
    paths: list[str],
    store: DuckDBStore | None,
    config: Config,
    fmt: str = "auto",
    on_file_done: Callable[[str, int], None] | None = None,
    stop: threading.Event | None = None,
) -> tuple[RunStats, Inputs]:
    """Replay files through the engine into the store; return what ran and what failed.

    When `stop` is set mid-run (SIGTERM/Ctrl-C) no more batches are pulled, the
    ticks already read are released and stored, and events still open stay open
    (close_open=False, as when `collect` stops): the input was not read to its end,
    so an end time would be invented.  Replaying the same files again completes
    them under the same deterministic ids.
    """
    engine_config = config.section("engine", EngineConfig)
    inputs = Inputs(DecodeContext(batch_size=engine_config.batch_size), on_file_done=on_file_done)
    sources = inputs.open(paths, fmt)
    cut: list[bool] = []
    if stop is not None:
        sources = [dataclasses.replace(s, batches=until_stopped(s.batches, stop, cut)) for s in sources]
    keep = store is not None and config.section("store", StoreConfig).keep_flows
    on_batch = flow_keeper(store) if keep and store is not None else None
    router = router_for(config, store.upsert if store else None)  # store, then alerts and mitigation
    engine = Engine(build_detectors(config), router, engine_config, on_batch=on_batch, errors=inputs.ctx.errors)
    try:
        stats = engine.run(sources, close_open=not cut)
    finally:
        router.close()
    return stats, inputs
