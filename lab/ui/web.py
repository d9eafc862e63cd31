"""`pglab top --web`: the same app in a browser, served by textual-serve on 127.0.0.1 only.

textual-serve starts one `pglab top` process per browser tab and relays its terminal over a
websocket, so what the browser shows is exactly the terminal dashboard."""
from __future__ import annotations

import shlex
import sys

HOST = "127.0.0.1"   # a workshop projector on this machine; never another interface


def command(lab_name: str) -> str:
    """The command each browser tab runs: this Python, this pglab."""
    return f"{shlex.quote(sys.executable)} -m lab top --name {shlex.quote(lab_name)}"


def serve(lab_name: str, port: int) -> None:
    """Blocks until interrupted."""
    from textual_serve.server import Server  # lazy: textual-serve (aiohttp) only when serving
    Server(command(lab_name), host=HOST, port=port, title=f"pglab top: {lab_name}").serve()
