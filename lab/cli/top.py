"""pglab top [--name] [--web [--port]]: the live dashboard, in the terminal or in a browser."""
from __future__ import annotations

import importlib.util
from typing import Optional

import typer
from rich.text import Text

from lab.api import Lab, default_name
from lab.cli import app
from lab.cli.core import NameOpt
from lab.cli.render import console
from lab.errors import InvalidInput, RuntimeUnavailable

UI_EXTRA = "pip install 'pglab[ui]'"


def _need(module: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):     # a module blocked or half-installed counts as missing
        found = False
    if not found:
        raise RuntimeUnavailable(f"pglab top needs {module.replace('_', '-')}, which is not installed",
                                 f"install it with: {UI_EXTRA}")


@app.command()
def top(
    name: Optional[str] = NameOpt,
    web: bool = typer.Option(False, "--web", help="Serve the dashboard in a browser on 127.0.0.1."),
    port: int = typer.Option(8000, "--port", help="Port for --web."),
) -> None:
    """A live dashboard of a lab: roles, LSNs, lag sparklines, events; keys inject faults and fail over."""
    _need("textual")
    if web:
        _need("textual_serve")
        if not 1024 <= port <= 65535:
            raise InvalidInput(f"--port {port} is out of range", "use 1024-65535")
    lab = Lab.open(name or default_name())
    if web:
        from lab.ui import web as ui_web  # lazy: textual-serve and aiohttp load only with --web
        console.print(f"serving pglab top for lab {lab.name} on http://{ui_web.HOST}:{port}  (Ctrl-C stops)")
        ui_web.serve(lab.name, port)
        return
    from lab.ui.app import TopApp  # lazy: Textual loads only for `pglab top`, so `pglab status` stays fast
    broken = TopApp(lab).run() or []
    if broken:
        console.print(Text(f"still broken in lab {lab.name}:", style="bold red"))
        for line in broken:
            console.print(f"  {line}", markup=False)
    else:
        console.print(f"lab {lab.name}: nothing left broken")
