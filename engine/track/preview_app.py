"""The preview page: campaign x variant x sample recipient, HTML, text, headers and push side by side.

Every request renders afresh (:func:`engine.track.preview.render_previews`), so the page always
shows the files as they are. A watcher (watchfiles) on the templates and campaigns directories
tells open pages through server-sent events at ``/changes``, and they reload themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route
from watchfiles import awatch

from engine.render.push import RenderedPush
from engine.track.preview import Preview, PreviewSet

KEEPALIVE_SECONDS = 10.0

_STYLE = """
body{margin:0;font:14px/1.45 system-ui,sans-serif;color:#1d1d1f;background:#f5f5f7}
header{padding:12px 20px;background:#1d1d1f;color:#fff;display:flex;gap:16px;align-items:baseline}
header a{color:#c9c2ff} main{padding:16px 20px} h1{font-size:18px;margin:0} h2{font-size:14px;margin:0 0 8px}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;
vertical-align:top} .error{background:#fff0f0;border:1px solid #e0a0a0;padding:8px 12px;margin:0 0 8px;
white-space:pre-wrap;font-family:ui-monospace,monospace} .warning{background:#fffbe6;border:1px solid #e6d28a;
padding:6px 12px;margin:0 0 8px} .panes{display:grid;grid-template-columns:640px 1fr 1fr;gap:16px}
.pane{background:#fff;border:1px solid #ddd;padding:10px;overflow:auto} iframe{width:620px;height:760px;border:0}
pre{white-space:pre-wrap;word-break:break-all;margin:0;font:12px/1.5 ui-monospace,monospace}
#headers td{word-break:break-all} .subject{font-size:16px;font-weight:600}
.muted{color:#6e6e73}
"""
_RELOAD = ("<script>window.kairosChanges = new EventSource('/changes');"
           "window.kairosChanges.onmessage = () => location.reload();</script>")


@dataclass
class _Watch:
    """What the watcher shares with the event streams: a version number and a wake-up event."""

    version: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def bump(self) -> None:
        self.version += 1
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
                        f"<style>{_STYLE}</style></head><body><header><h1>Kairos preview</h1>"
                        f'<a href="/">all messages</a></header><main>{body}</main>{_RELOAD}</body></html>')


def _notes(previews: PreviewSet) -> str:
    return "".join(f'<div class="error">{escape(e)}</div>' for e in previews.errors) + \
        "".join(f'<div class="warning">{escape(w)}</div>' for w in previews.warnings)


def _link(preview: Preview) -> str:
    return "/m/" + "/".join(preview.key)


def _index(previews: PreviewSet) -> str:
    rows = []
    for preview in previews.previews:
        message = preview.message
        subject = escape(message.email.rendered.subject) if message.email else \
            f'<span class="error">{escape(str(message.error))}</span>'
        rows.append(f'<tr><td>{escape(preview.campaign)}</td><td>{escape(message.variant)}</td>'
                    f'<td>{escape(message.recipient_id)}</td>'
                    f'<td><a href="{escape(_link(preview))}">{subject}</a></td></tr>')
    sources = "".join(f"<li>{escape(s)}</li>" for s in previews.sources)
    return (f"{_notes(previews)}<table id=\"messages\"><tr><th>campaign</th><th>variant</th><th>recipient</th>"
            f"<th>subject</th></tr>{''.join(rows)}</table><p class=\"muted\">Sample data:</p><ul>{sources}</ul>")


def _view(preview: Preview, previews: PreviewSet) -> str:
    message = preview.message
    if message.email is None:
        warnings = "".join(f'<div class="warning">{escape(w)}</div>' for w in previews.warnings)
        return f'<div class="error" id="error">{escape(str(message.error))}</div>{warnings}'
    email = message.email
    headers = "".join(f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in email.headers)
    html_pane = f'<iframe id="html" title="HTML part" src="{escape(_link(preview))}/html"></iframe>' \
        if email.html is not None else '<p class="muted">No HTML part.</p>'
    return (f"{_notes(previews)}<p class=\"muted\">{escape(preview.campaign)} · variant {escape(message.variant)} · "
            f"recipient {escape(message.recipient_id)} · envelope sender {escape(email.sender)} · "
            f'<a href="{escape(_link(preview))}/eml">download .eml</a></p>'
            f'<p class="subject" id="subject">{escape(email.rendered.subject)}</p>'
            f'<p class="muted" id="preheader">{escape(email.rendered.preheader)}</p>'
            f'<div class="panes"><section class="pane"><h2>HTML</h2>{html_pane}</section>'
            f'<section class="pane"><h2>Text</h2><pre id="text">{escape(email.text)}</pre></section>'
            f'<section class="pane"><h2>Headers</h2><table id="headers">{headers}</table></section>'
            f"{_push_pane(message.push)}</div>")


def _push_pane(push: RenderedPush | None) -> str:
    """The notification the push channel would send, as shown and as handed to the providers."""
    if push is None:
        return ""
    payload = json.dumps({"title": push.title, "body": push.body, "url": push.url}, indent=2, ensure_ascii=False)
    return (f'<section class="pane" id="push"><h2>Push</h2><div class="notification">'
            f'<strong id="push-title">{escape(push.title)}</strong><p id="push-body">{escape(push.body)}</p>'
            f'<p class="muted" id="push-url">{escape(push.url or "no link")}</p></div>'
            f'<pre id="push-payload">{escape(payload)}</pre></section>')


def preview_app(render: Callable[[], PreviewSet], watch: Sequence[Path]) -> Starlette:
    """The preview page over ``render`` (called per request); reloads when files under ``watch`` change."""
    state = _Watch()

    async def watch_files() -> None:
        async for _changes in awatch(*[p for p in watch if p.exists()], stop_event=state.stop):
            state.bump()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(watch_files())
        try:
            yield
        finally:
            state.stop.set()
            state.bump()
            await task

    def found(request: Request) -> tuple[Preview | None, PreviewSet]:
        previews = render()
        params = request.path_params
        return previews.find(params["campaign"], params["variant"], params["recipient"]), previews

    async def index(_request: Request) -> Response:
        return _page("Kairos preview", _index(render()))

    async def view(request: Request) -> Response:
        preview, previews = found(request)
        if preview is None:
            return _page("Not found", f"{_notes(previews)}<p>No such message (any more).</p>")
        return _page(f"{preview.campaign} · {preview.message.variant} · {preview.message.recipient_id}",
                     _view(preview, previews))

    async def html_part(request: Request) -> Response:
        preview, _previews = found(request)
        if preview is None or preview.message.email is None or preview.message.email.html is None:
            return Response("no HTML part", status_code=404)
        return HTMLResponse(preview.message.email.html)

    async def eml(request: Request) -> Response:
        preview, _previews = found(request)
        if preview is None or preview.message.email is None:
            return Response("no message", status_code=404)
        name = f"{preview.campaign}-{preview.message.variant}-{preview.message.recipient_id}.eml"
        return Response(preview.message.email.data, media_type="message/rfc822",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def changes(_request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            seen = state.version
            yield "retry: 1000\n\n"
            while not state.stop.is_set():
                waiting = state.changed
                if state.version != seen:
                    seen = state.version
                    yield f"data: {seen}\n\n"
                    continue
                try:
                    await asyncio.wait_for(waiting.wait(), timeout=KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": still here\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    base = "/m/{campaign}/{variant}/{recipient}"
    return Starlette(lifespan=lifespan, routes=[
        Route("/", index), Route(base, view), Route(base + "/html", html_part), Route(base + "/eml", eml),
        Route("/changes", changes),
    ])
