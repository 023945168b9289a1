"""The dashboard's web server: a subscriber thread feeds ``DashboardState``; the page (static
files in ``static/``) gets snapshots of it over a WebSocket, at most ``PUSH_HZ`` a second and
only when something changed. A slow browser gets the newest snapshot when it is ready for one:
nothing queues up for it, whatever the feed's rate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from typing import Any

from streamsnn import wire
from streamsnn.dashboard.state import DashboardState
from streamsnn.subscriber import Subscriber

log = logging.getLogger(__name__)

PUSH_HZ = 20.0
"""Snapshots per second and browser, at most."""
RECEIVE_S = 0.5  # the subscriber thread's longest wait before it looks at ``stop``


class Feed:
    """The subscriber thread: every message of ``address`` (predictions, frames, heartbeats,
    summaries) into ``state``. ``Subscriber`` counts gaps, restarts and bad messages as it does
    for every consumer; bad messages are skipped."""

    def __init__(self, address: str, state: DashboardState) -> None:
        self.state = state
        prefixes = (wire.PREDICTION_PREFIX, wire.FRAME_PREFIX)
        self.subscriber = Subscriber(address, topics=prefixes, heartbeats=True)  # ValueError: bad address
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._main, name="streamsnn-dashboard-feed", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        sub = self.subscriber
        try:
            while not self.stop.is_set():
                msg = sub.receive(timeout_s=RECEIVE_S)
                if msg is None:
                    self.state.idle(sub.stats)
                else:
                    self.state.feed(msg, sub.stats)
        finally:
            sub.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=RECEIVE_S * 4 + 5)


class Snapshots:
    """The newest snapshot as JSON text, made once per state ``version`` asked for and shared by
    every browser."""

    def __init__(self, state: DashboardState) -> None:
        self.state = state
        self._version = -1
        self._text = ""

    def latest(self) -> tuple[int, str]:
        if self.state.version != self._version:
            snap = self.state.snapshot()
            self._version, self._text = snap["version"], json.dumps(snap, separators=(",", ":"))
        return self._version, self._text


def make_app(state: DashboardState) -> Any:
    """The Starlette application: the page at ``/``, its files under ``/static``, the current
    snapshot at ``/state`` and the live feed at ``/ws``."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, Response
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles
    from starlette.websockets import WebSocket, WebSocketDisconnect

    static = StaticFiles(packages=[("streamsnn.dashboard", "static")])
    snapshots = Snapshots(state)
    index = static.lookup_path("index.html")[0]

    async def page(request: Any) -> FileResponse:
        return FileResponse(index, headers={"Cache-Control": "no-store"})

    async def current(request: Any) -> Response:
        return Response(snapshots.latest()[1], media_type="application/json")

    async def live(ws: WebSocket) -> None:
        await ws.accept()
        closed = asyncio.Event()

        async def read() -> None:  # the page sends nothing; this notices it leaving
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                while (await ws.receive())["type"] != "websocket.disconnect":
                    pass
            closed.set()

        reader = asyncio.create_task(read())
        sent = -1
        try:
            while not closed.is_set():
                version, text = snapshots.latest()
                if version != sent:
                    await ws.send_text(text)  # waits for a slow browser: states meanwhile are skipped
                    sent = version
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(closed.wait(), 1 / PUSH_HZ)
        except (WebSocketDisconnect, RuntimeError, ConnectionError):
            pass  # the browser went away while sending
        finally:
            reader.cancel()

    return Starlette(
        routes=[
            Route("/", page),
            Route("/state", current),
            WebSocketRoute("/ws", live),
            Mount("/static", app=static, name="static"),
        ]
    )


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port); ``OSError`` names the address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    family, kind, proto, _, where = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(where)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.set_inheritable(True)
    return sock


def serve(address: str, host: str, port: int, on_ready: Any = None) -> None:
    """Subscribe to ``address`` and serve the dashboard on ``host:port`` until interrupted.
    ``ValueError``: a bad feed address; ``OSError``: the web address cannot be listened on.
    ``on_ready(url)`` is called once the page can be opened."""
    import uvicorn

    sock = listen(host, port)
    state = DashboardState(address)
    try:
        feed = Feed(address, state)
    except BaseException:
        sock.close()
        raise
    feed.start()
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    config = uvicorn.Config(make_app(state), log_level="warning", lifespan="off", ws="websockets-sansio")
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(f"http://{shown}:{bound_port}/")
    try:
        server.run(sockets=[sock])
    finally:
        feed.close()
        sock.close()
