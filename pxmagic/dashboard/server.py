"""Serve the dashboard from the hub's loop: Bokeh's server, a token, and ``/metrics``.

Like Jupyter's server, the page is bound to 127.0.0.1 unless told
otherwise and needs a random token: given in the URL once
(``/status?token=...``), it is kept in a cookie for the page's websocket
and later visits.  A request without it is refused with 403.  ``/metrics``
takes the token as ``?token=`` or ``Authorization: Bearer``, as scrapers
can send it.
"""
from __future__ import annotations

import hmac
import socket
from collections.abc import Callable
from functools import partial
from typing import Any

try:
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.auth_provider import AuthProvider
    from bokeh.server.server import Server
    from tornado.ioloop import IOLoop
    from tornado.web import HTTPError, RequestHandler
    from tornado.websocket import WebSocketHandler
except ImportError as error:  # an optional extra
    from . import NEEDS_BOKEH

    raise ImportError(NEEDS_BOKEH) from error

from ..hub.history import TaskHistory
from . import metrics, page

COOKIE = "pxmagic-dashboard"
PAGE_PATH = "/status"


def _token_given(handler: RequestHandler, token: str) -> bool:
    offered = handler.get_argument("token", "") or handler.get_cookie(COOKIE, "")
    bearer = handler.request.headers.get("Authorization", "")
    if bearer.startswith("Bearer "):
        offered = offered or bearer.removeprefix("Bearer ")
    return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())


class TokenAuth(AuthProvider):
    """Bokeh's authentication hook: a user is whoever shows the token."""

    def __init__(self, token: str):
        self.token = token
        super().__init__()

    @property
    def get_user(self) -> Callable[[RequestHandler], str | None]:
        def user(handler: RequestHandler) -> str | None:
            if not _token_given(handler, self.token):
                return None
            if handler.get_argument("token", "") and not isinstance(handler, WebSocketHandler):
                handler.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
            return "pxmagic"

        return user

    @property
    def login_url(self) -> str:
        return "/refused"

    @property
    def login_handler(self) -> type[RequestHandler]:
        return Refused


class Refused(RequestHandler):
    def get(self) -> None:
        raise HTTPError(403, "the pxmagic dashboard needs its token: open the URL that rc.dashboard_link gives")


class Metrics(RequestHandler):
    def initialize(self, status: Callable[[], dict], history: TaskHistory, token: str) -> None:
        self.status, self.history, self.token = status, history, token

    def get(self) -> None:
        if not _token_given(self, self.token):
            raise HTTPError(403, "/metrics needs the dashboard's token (?token= or Authorization: Bearer)")
        self.set_header("Content-Type", metrics.CONTENT_TYPE)
        self.write(metrics.metrics_text(self.status(), dict(self.history.totals), self.history.bytes_moved))


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def start(status: Callable[[], dict], history: TaskHistory, token: str, address: str = "127.0.0.1",
          port: int = 0) -> tuple[Any, str]:
    """Start serving on the running asyncio loop; the server and the page's URL (with its token)."""
    port = port or _free_port(address)
    application = Application(FunctionHandler(partial(page.make_document, status=status, history=history)))
    origins = [f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    server = Server({PAGE_PATH: application}, io_loop=IOLoop.current(), address=address, port=port,
                    allow_websocket_origin=origins, auth_provider=TokenAuth(token),
                    extra_patterns=[("/metrics", Metrics, {"status": status, "history": history, "token": token})])
    server.start()
    host = "127.0.0.1" if address in ("0.0.0.0", "") else address
    return server, f"http://{host}:{port}{PAGE_PATH}?token={token}"
