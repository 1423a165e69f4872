"""The REST API and the dashboard's server: a FastAPI app over the store (IODA's API v2 as the model).

Resources are named for what users ask: which entities are there
(``/entities/query``), what do their signals look like (``/signals/raw``), when
were they dark (``/outages/events``, ``/outages/alerts``, ``/outages/summary``),
who attacked what (``/attacks``), and why (``/verdicts``).  Reads are open;
whatever changes the store needs ``Authorization: Bearer TOKEN`` and is
refused when serve runs without a token.  Every request reads the store
through :class:`.reader.StoreReader`, so `replay` and `collect` can write it
meanwhile.  The OpenAPI document is at ``/openapi.json`` (the interactive
docs pages are off: they load their scripts from a CDN, and serve works offline).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import duckdb
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..errors import StoreError
from ..store import DuckDBStore
from . import query, series
from .params import US, QueryError, Window, entity_code, entity_type, page
from .reader import ReadOnlyStore, StoreReader

STATIC = Path(__file__).parent / "static"
MAX_BODY = 64 * 1024  # bytes of a request body
MAX_URL = 4096  # characters of path + query
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for code, text in (
        (400, "the request is malformed: the message says what to fix"),
        (401, "missing or wrong bearer token"),
        (403, "changes are disabled (no token configured)"),
        (404, "no such entity type or event"),
        (409, "the store is being written by another process"),
        (411, "chunked request body"),
        (413, "request body too large"),
        (414, "URL too long"),
        (501, "not in this version yet"),
        (503, "the store cannot be read"),
    )
}

BEARER = HTTPBearer(auto_error=False, description="the token given to `blackout serve --token`")
TIME_PATTERN = (
    r"^(\d{1,11}(\.\d{1,6})?|-\d{1,6}[smhdw]|(19[7-9]\d|[2-9]\d{3})-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])"
    r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?)?(Z|[+-](0\d|1[0-3]):[0-5]\d)?)$"
)  # days 29-31 are valid times too, the pattern just does not promise them
EntityType = Literal["country", "asn", "prefix"]
From = Annotated[
    str | None,
    Query(alias="from", pattern=TIME_PATTERN, description="ISO 8601, epoch seconds, or -6h (before now)"),
]
Until = Annotated[
    str | None, Query(pattern=TIME_PATTERN, description="ISO 8601, epoch seconds, or -1h (before now); exclusive")
]
Limit = Annotated[
    int | None, Query(ge=1, le=MAX_LIMIT, description=f"page size (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})")
]
Offset = Annotated[int | None, Query(ge=0, description="events to skip (default 0)")]
Datasource = Annotated[
    Literal["bgp", "ping-slash24", "flows"] | None,
    Query(description="IODA's datasource: bgp, ping-slash24 (probing) or flows (traffic)"),
]


def _store(request: Request) -> Iterator[ReadOnlyStore]:
    """A read-only view of the store for one request (closed after the response)."""
    with request.app.state.reader.open() as st:
        yield st


Store = Annotated[ReadOnlyStore, Depends(_store)]


@dataclasses.dataclass(frozen=True)
class OutageFilter:
    """The range and entity every outage endpoint is asked about."""

    window: Window
    entity_type: str | None
    entity: str | None


def _outage_filter(
    from_: From = None,
    until: Until = None,
    entityType: EntityType | None = None,
    entityCode: str | None = None,
) -> OutageFilter:
    code = entity_code(entityType, entityCode) if (entityType and entityCode) else entityCode
    return OutageFilter(Window.parse(from_, until), entityType, code)


Outages = Annotated[OutageFilter, Depends(_outage_filter)]


def _now_us() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * US)


def create_app(
    db_path: str,
    token: str | None = None,
    asnames: str | None = None,
    stats_file: str | None = None,
    read_mode: str = "snapshot",
) -> FastAPI:
    """The API and dashboard over the store at db_path; ``token`` enables the state-changing endpoints."""
    reader = StoreReader(db_path, mode=read_mode)
    names = query.Names(asnames)
    served: Counter[str] = Counter()
    app = FastAPI(
        title="blackout",
        version=__version__,
        description="Outages, DDoS attacks and their causes, per country, AS and prefix.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.reader = reader
    api = APIRouter(responses=ERRORS)

    @app.middleware("http")
    async def limits(request: Request, call_next: Any) -> Response:
        """Refuse oversized requests before any work; count answers by status class for /metrics."""
        url = request.url.path + "?" + (request.url.query or "")
        length = request.headers.get("content-length") or "0"
        if len(url) > MAX_URL:
            response: Response = _error(414, f"URL longer than {MAX_URL} characters: narrow the query")
        elif not length.isdigit():
            response = _error(400, f"Content-Length {length[:20]!r} is not a number of bytes")
        elif int(length) > MAX_BODY:
            response = _error(413, f"request body over {MAX_BODY} bytes: send less")
        elif request.headers.get("transfer-encoding", "").lower() == "chunked":
            response = _error(411, "chunked request bodies are not accepted: send a Content-Length")
        else:
            response = await call_next(request)
        served[f"{response.status_code // 100}xx"] += 1
        return response

    @app.exception_handler(QueryError)
    async def on_query_error(_request: Request, exc: QueryError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(StoreError)
    async def on_store_error(_request: Request, exc: StoreError) -> JSONResponse:
        return _error(503, str(exc))

    @app.exception_handler(duckdb.Error)
    async def on_store_query(_request: Request, exc: duckdb.Error) -> JSONResponse:
        return _error(503, f"the store could not answer (written by another blackout version?): {exc}")

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "header"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(400, "; ".join(parts) or "invalid request")

    def authorised(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if token is None:
            raise QueryError("changes are disabled: start `blackout serve --token TOKEN` to allow them", 403)
        if creds is None or not hmac.compare_digest(creds.credentials.encode(), token.encode()):
            raise QueryError("this endpoint changes the store: send Authorization: Bearer TOKEN", 401)

    # ------------------------------------------------------------------ reads
    @api.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness, and a `generation` that changes whenever a writer commits (the dashboard polls it)."""
        sig = reader.signature()
        return {
            "status": "ok",
            "version": __version__,
            "store": reader.path,
            "generation": "-".join(f"{a}.{b}" for a, b in sig),
        }

    @api.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    def metrics(st: Store) -> PlainTextResponse:
        """Prometheus text: events in the store, serve's counters, a collector's stats file if given."""
        text = series.metrics(st, reader, dict(served), stats_file)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @api.get("/entities/query", tags=["entities"])
    def entities(
        st: Store,
        search: str = "",
        entityType: EntityType | None = None,
        limit: Limit = None,
    ) -> dict[str, Any]:
        """Countries, ASes and prefixes present in the store, with names and event counts."""
        kind = entity_type(entityType) if entityType else None
        lim, _ = page(limit, 0, DEFAULT_LIMIT, MAX_LIMIT)
        return {"data": query.entities(st, names, search, kind, lim)}

    @api.get("/signals/raw/{entity_type}/{entity}", tags=["signals"])
    def signals_raw(
        st: Store,
        entity_type_: Annotated[EntityType, PathParam(alias="entity_type")],
        entity: str,
        from_: From = None,
        until: Until = None,
        signal: str | None = None,
        datasource: Datasource = None,
        normalised: bool = False,
        maxPoints: Annotated[int, Query(ge=10, le=20000)] = 2000,
    ) -> dict[str, Any]:
        """An entity's signals on a regular grid; normalised=true divides by the median (IODA-style)."""
        kind = entity_type(entity_type_)
        code = entity_code(kind, entity)
        window = Window.parse(from_, until)
        data = series.signals_raw(st, names, kind, code, window, signal, normalised, maxPoints, datasource)
        return {"entity": names.entity(kind, code), "data": data}

    @api.get("/outages/alerts", tags=["outages"])
    def outage_alerts(
        st: Store,
        entityType: EntityType,
        entityCode: str,
        from_: From = None,
        until: Until = None,
        signal: str | None = None,
        datasource: Datasource = None,
    ) -> dict[str, Any]:
        """Level transitions of the entity's signals under IODA's rule, recomputed from stored signals."""
        kind = entity_type(entityType)
        code = entity_code(kind, entityCode)
        return {"data": series.alerts(st, names, kind, code, Window.parse(from_, until), signal, datasource)}

    def _outages(st: ReadOnlyStore, f: OutageFilter) -> list[dict[str, Any]]:
        return query.outages(st, f.window, f.entity_type, f.entity)

    @api.get("/outages/events", tags=["outages"])
    def outage_events(
        st: Store,
        f: Outages,
        format: Annotated[str, Query(pattern="^(ioda|codf|blackout)$")] = "ioda",
        limit: Annotated[int | None, Query(ge=1, le=5000, description="page size (default 500)")] = None,
        offset: Offset = None,
    ) -> dict[str, Any]:
        """Outage events: format=ioda (IODA's fields), codf (CODF) or blackout (docs/EVENTS.md)."""
        lim, off = page(limit, offset, 500, 5000)
        rows = _outages(st, f)
        total, rows = len(rows), rows[off : off + lim]
        if format == "codf":
            data = query.codf(rows, f.window, _now_us())
        elif format == "ioda":
            data = query.ioda_events(rows, f.window, _now_us(), names)
        else:
            data = rows
        return {"data": data, "total": total, "limit": lim, "offset": off}

    @api.get("/outages/summary", tags=["outages"])
    def outage_summary(st: Store, f: Outages) -> dict[str, Any]:
        """Per entity: number of events and summed scores (overall and per datasource)."""
        return {"data": query.summary(_outages(st, f), names)}

    @api.get("/verdicts", tags=["outages"])
    def verdicts(st: Store, f: Outages) -> dict[str, Any]:
        """Why each outage happened: ranked causes with their evidence."""
        return {"data": query.verdicts(_outages(st, f))}

    @api.get("/attacks", tags=["attacks"])
    def attacks(
        st: Store,
        from_: From = None,
        until: Until = None,
        target: Annotated[str | None, Query(description="attacked address or prefix")] = None,
        country: Annotated[str | None, Query(description="target country (ISO 3166 alpha-2)")] = None,
        asn: Annotated[int | None, Query(ge=0, lt=2**32, description="target's origin AS")] = None,
        vector: Annotated[str | None, Query(description="e.g. syn_flood, dns_amplification")] = None,
        limit: Limit = None,
        offset: Offset = None,
    ) -> dict[str, Any]:
        """Attacks overlapping the range, in the JSON of `blackout attacks --json`, one page at a time."""
        lim, off = page(limit, offset, DEFAULT_LIMIT, MAX_LIMIT)
        rows, total = query.attacks(st, Window.parse(from_, until), target, country, vector, asn, lim, off)
        nxt = off + lim if off + lim < total else None
        return {"data": rows, "total": total, "limit": lim, "offset": off, "next_offset": nxt}

    @api.get("/attacks/{attack_id}", tags=["attacks"])
    def attack(st: Store, attack_id: str) -> dict[str, Any]:
        """One attack in full."""
        return query.attack(st, attack_id)

    @api.get("/reports/daily", tags=["reports"])
    def daily_report(st: Store, entity: str | None = None, day: str | None = None) -> Any:
        """The daily report of attacks and outages (when `blackout report` exists)."""
        return query.daily_report(st, entity, day)

    # ----------------------------------------------------------------- writes
    @api.delete("/attacks/{attack_id}", tags=["attacks"], dependencies=[Depends(authorised)])
    def delete_attack(attack_id: str) -> dict[str, Any]:
        """Remove an attack (a false positive) from the store. Needs the token."""
        return {"deleted": _delete(db_path, "attacks", attack_id)}

    @api.delete("/outages/{outage_id}", tags=["outages"], dependencies=[Depends(authorised)])
    def delete_outage(outage_id: str) -> dict[str, Any]:
        """Remove an outage from the store. Needs the token."""
        return {"deleted": _delete(db_path, "outages", outage_id)}

    app.include_router(api)
    error_schema(app)

    # -------------------------------------------------------------- dashboard
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def _delete(db_path: str, table: str, event_id: str) -> str:
    """Delete one event with a short write connection; a 409 when a writer holds the store."""
    try:
        store = DuckDBStore(db_path)
    except StoreError as exc:
        if "lock" in str(exc).lower():
            raise QueryError("the store is being written by another process: retry when it is done", 409) from exc
        raise
    try:
        found = store.con.execute(f"SELECT count(*) FROM {table} WHERE id = ?", [event_id]).fetchall()[0][0]
        if not found:
            raise QueryError(f"no {table[:-1]} with id {event_id!r}", 404)
        store.con.execute(f"DELETE FROM {table} WHERE id = ?", [event_id]).fetchall()
    except duckdb.Error as exc:
        raise StoreError(f"cannot delete {event_id}: {exc}") from exc
    finally:
        store.close()
    return event_id


def error_schema(app: FastAPI) -> None:
    """Add the error body's schema to the OpenAPI document (every 4xx/5xx answer has it)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            doc.setdefault("components", {}).setdefault("schemas", {})["Error"] = {
                "type": "object",
                "required": ["error", "status"],
                "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
            }
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)
