"""`ratchet ui`: the live, read-only dashboard, a small Starlette app served by uvicorn.

Pages are rendered on the server from the same templates as `ratchet report`; the only
script (`live.js`) listens to `/events` (server-sent events) and, when the store says a
journal grew, fetches the page's fragment again: the page updates without a reload. The
store's hint stream (`Store.watch`) wakes a thread that asks `Store.changes` what really
changed, once a second at the latest (hints may be lost); each batch of changed runs
bumps a generation number, which is what `/events` sends. So does a change in the messages
queued for runs (sent, or filed: no journal grows), looked at in the same turn.

Nothing here writes: no route takes a POST, and every read goes through the home's store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from html import escape
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.home import Home
from engine.run.clock import clock_from_env
from engine.supervise.queued import queued_keys
from engine.view.dashboard import Filters, listing
from engine.view.report import UnknownRunError, environment, render_report, run_context
from engine.view.rows import RowCache
from journal import Store, Watch, check_run_id
from journal.errors import InvalidRunIdError, JournalError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger("ratchet.ui")

# Pages may run their own script and talk to this server only; nothing else, ever.
CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
       "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
EVENT_TICK = 0.2  # seconds between two looks at the generation, per open page


class Generations:
    """Counts batches of changes in the store: a number the pages compare with their own."""

    def __init__(self, store: Store, *, interval: float = 1.0,
                 on_changes: Callable[[list[str]], None] | None = None,
                 also: Callable[[], object] | None = None) -> None:
        self.store = store
        self.also = also  # something else the pages show that no journal announces: a change bumps too
        self._also_seen: object = None
        self.interval = interval
        self.on_changes = on_changes  # told which runs changed, before the number moves
        self.number = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._watch: Watch | None = None
        self._thread: threading.Thread | None = None
        self._cursor: Any = None

    def start(self) -> None:
        self._cursor = self.store.changes().cursor
        try:
            self._watch = self.store.watch(lambda _run_id: self._wake.set())
        except OSError:  # no hints (e.g. inotify's limits reached): `changes` every interval still tells
            log.warning("ratchet ui: cannot watch %s; looking for changes every %ss", self.store.location,
                        self.interval, exc_info=True)
        self._thread = threading.Thread(target=self._loop, name="ratchet-ui-changes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                changes = self.store.changes(self._cursor)
            except Exception:  # a store hiccup must not end live updates: log it, look again
                log.exception("ratchet ui: cannot list changes; trying again")
                continue
            self._cursor = changes.cursor
            if changes.run_ids:
                if self.on_changes is not None:
                    self.on_changes(changes.run_ids)
                self.number += 1
            elif self.also is not None and self._also_changed():
                self.number += 1

    def _also_changed(self) -> bool:
        try:
            seen = self.also() if self.also is not None else None
        except Exception:  # a store hiccup must not end live updates: log it, look again
            log.exception("ratchet ui: cannot look at the queued messages; trying again")
            return False
        changed, self._also_seen = seen != self._also_seen, seen
        return changed


def create_app(home: Home, *, interval: float = 1.0) -> Starlette:
    """The dashboard of `home`, read-only."""
    store = home.store
    cache = RowCache(home)
    generations = Generations(store, interval=interval, on_changes=cache.mark, also=lambda: queued_keys(home))
    env = environment()

    def page(template: str, request: Request, seen: int, **context: Any) -> Response:
        """`seen`: the generation read before the data was, so a change made meanwhile is never
        taken as shown (the page would then miss it until the next one)."""
        fragment = request.query_params.get("fragment") == "1"
        name = f"{template}_body.html" if fragment else f"{template}.html"
        html = env.get_template(name).render(generation=seen, location=store.location, **context)
        return HTMLResponse(html, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})

    def rows(request: Request) -> tuple[Filters, Any]:
        filters = Filters.from_query(dict(request.query_params))
        return filters, listing(cache.rows(clock_from_env().now()), filters)

    async def dashboard(request: Request) -> Response:
        seen = generations.number
        filters, found = await asyncio.to_thread(rows, request)
        return page("dashboard", request, seen, filters=filters, listing=found)

    async def runs_json(request: Request) -> Response:
        _, found = await asyncio.to_thread(rows, request)
        return JSONResponse({"total": found.total, "counts": found.counts, "matched": found.matched,
                             "runs": [row.to_dict() for row in found.rows]})

    def _public() -> Ed25519PublicKey | None:
        """The home's seal key, looked up per page (it is made on first use, after the UI starts)."""
        from engine.run.sealing import home_public_key

        try:
            return home_public_key(home)
        except JournalError:  # home.pub replaced: the page then says every seal is by an unknown key
            return None

    def _run_id(request: Request) -> str:
        return check_run_id(request.path_params["run_id"])

    async def run_page(request: Request) -> Response:
        seen = generations.number
        try:
            context = await asyncio.to_thread(run_context, store, _run_id(request), public=_public())
        except (UnknownRunError, InvalidRunIdError) as exc:
            return HTMLResponse(f"<!doctype html><title>no such run</title><p>{escape(str(exc))}</p>",
                                status_code=404, headers={"Content-Security-Policy": CSP})
        return page("run", request, seen, **{**context, "linked": True})

    async def report(request: Request) -> Response:
        try:
            run_id = _run_id(request)
            html = await asyncio.to_thread(render_report, store, run_id, public=_public())
        except (UnknownRunError, InvalidRunIdError) as exc:
            return Response(str(exc), status_code=404, media_type="text/plain")
        return HTMLResponse(html, headers={"Content-Disposition": f'attachment; filename="{run_id}.html"'})

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            sent = None
            yield "retry: 2000\n\n"
            while True:
                if generations.number != sent:
                    sent = generations.number
                    yield f"data: {sent}\n\n"
                await asyncio.sleep(EVENT_TICK)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def live_js(request: Request) -> Response:
        return Response(_LIVE_JS, media_type="text/javascript", headers={"Cache-Control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(generations.start)
        try:
            yield
        finally:
            await asyncio.to_thread(generations.stop)

    return Starlette(routes=[
        Route("/", dashboard),
        Route("/runs.json", runs_json),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/report.html", report),
        Route("/events", events),
        Route("/live.js", live_js),
    ], lifespan=lifespan)


def serve(home: Home, *, host: str, port: int) -> None:
    """Serve the dashboard until Ctrl-C / SIGTERM."""
    import uvicorn

    # An open page holds /events open: do not wait for it on shutdown longer than this.
    uvicorn.run(create_app(home), host=host, port=port, log_level="warning", timeout_graceful_shutdown=1)


_LIVE_JS = resources.files("engine.view").joinpath("templates", "live.js").read_text(encoding="utf-8")
