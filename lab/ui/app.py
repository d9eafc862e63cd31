"""`pglab top`: a panel per node, lag sparklines per standby (bytes and seconds), the optional
ledger writer, an event log, and keys that break and repair the selected node.

Widgets never connect to a server: a thread worker reads `Lab.status()` (never two at once, so a
frozen node's late answer cannot overwrite a newer one), the lag recorder feeds the sparklines,
and the app pushes values down into the widgets."""
from __future__ import annotations

import time
from datetime import datetime

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, RichLog, Sparkline, Static

from lab.api import Lab
from lab.errors import LabError
from lab.model import state as lab_state
from lab.cluster.status import LabStatus, NodeStatus, Role
from lab.ui import events
from lab.ui.feed import LagFeed, MonitorSwitch, Writer, still_broken
from lab.ui.keys import ACTIONS, BY_NAME

ROLE_STYLE = {Role.PRIMARY: "bold green", Role.STANDBY: "cyan", Role.DOWN: "bold red", Role.UNREACHABLE: "bold yellow"}


def _b(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n} B" if abs(n) < 1024 else (f"{n / 1024:.1f} kB" if abs(n) < 2**20 else f"{n / 2**20:.1f} MB")


def _s(x: float | None) -> str:
    return "unknown" if x is None else (f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s")


def node_text(n: NodeStatus | None, faults: list[str]) -> str:
    """The panel of one node, as rich markup; a figure that could not be read says unknown."""
    if n is None:
        return "[dim]no status yet[/]"
    state = ROLE_STYLE.get(n.role, "")
    lines = [f"[{state}]{n.role.value.upper()}[/]" + ("  [yellow]REPLAY PAUSED[/]" if n.replay_paused else "")
             + ("  [red]UNRECOVERABLE[/]" if n.unrecoverable else "")]
    if faults:
        lines.append(f"[red]faults: {', '.join(faults)}[/]")
    if n.role in (Role.DOWN, Role.UNREACHABLE):
        # nothing answers on the node itself: only what its primary still sees of it
        if n.upstream:
            lines.append(f"{n.upstream} still streams to it ({n.stream_state or 'unknown'}); "
                         f"lag {_b(n.replay_lag_bytes)} / {_s(n.replay_lag_s)}")
    elif n.role == Role.PRIMARY:
        lines.append(f"timeline {n.timeline if n.timeline is not None else 'unknown'}")
        lines.append(f"write LSN {n.current_lsn or 'unknown'}")
    else:
        lines.append(f"timeline {n.timeline if n.timeline is not None else 'unknown'}")
        lines.append(f"receive {n.receive_lsn or 'unknown'}")
        lines.append(f"replay  {n.replay_lsn or 'unknown'}")
        lines.append(f"from {n.upstream or 'unknown'} ({n.stream_state or 'not streaming'})")
        lines.append(f"sync {n.sync_state or 'unknown'}")
        lines.append(f"lag {_b(n.replay_lag_bytes)} / {_s(n.replay_lag_s)}")
    lines.append(f"slot {n.slot or 'none'}" + ("" if n.slot is None else
                                               f" ({'active' if n.slot_active else 'inactive'}, keeps {_b(n.slot_retained_bytes)})"))
    if n.error and n.role in (Role.DOWN, Role.UNREACHABLE):
        lines.append(f"[dim]{escape(n.error[:60])}[/]")
    return "\n".join(lines)


def manager_text(view, odd: dict[str, str], error: str | None = None) -> str:
    """The failover manager's own view, beside PostgreSQL's in the node panels: its leader, its
    members, the rest of its stack (etcd, HAProxy) and, in red, where the two views disagree
    (an operator learns most from those)."""
    if view is None:
        return f"[red]the manager's view could not be read: {escape(error or 'unknown')}[/]"
    head = f"[bold]{escape(view.manager)}[/]'s view: leader [bold]{escape(view.leader or 'none')}[/]"
    if view.error:
        head += f"  [yellow]({escape(view.error)})[/]"
    members = []
    for m in view.members:
        lag = "" if m.lag_bytes is None else f", lag {_b(m.lag_bytes)}"
        tl = "" if m.timeline is None else f", tl {m.timeline}"
        text = f"{m.name} {m.role} ({m.state or 'unknown'}{tl}{lag})"
        members.append(f"[red]{escape(text)}: {escape(odd[m.name])}[/]" if m.name in odd else escape(text))
    lines = [head, "members: " + ("  |  ".join(members) or "none")]
    parts = [c for c in view.components if c.name != "leader key"]
    if parts:
        lines.append("stack: " + "  ".join(escape(f"{c.kind} {c.name} {c.state}") for c in parts))
    for k in ("lab", "leader key"):
        if k in odd:
            lines.append(f"[red]disagreement ({k}): {escape(odd[k])}[/]")
    return "\n".join(lines)


class NodePanel(Static):
    def __init__(self, node: str):
        super().__init__(id=f"node-{node}", classes="node")
        self.node = node
        self.border_title = node
        self.plain = ""          # what the panel shows, without markup (tests read it)

    def show(self, n: NodeStatus | None, faults: list[str]) -> None:
        markup = node_text(n, faults)
        self.plain = Text.from_markup(markup).plain
        self.update(markup)


class LagPanel(Vertical):
    """Replay lag of one node over the last 12 s, in bytes and in seconds."""

    def __init__(self, node: str):
        super().__init__(id=f"lag-{node}", classes="lag")
        self.node = node
        self.border_title = f"{node} replay lag"

    def compose(self) -> ComposeResult:
        yield Static("", classes="lagb")
        yield Sparkline([], summary_function=max, classes="sparkb")
        yield Static("", classes="lags")
        yield Sparkline([], summary_function=max, classes="sparks")

    def show(self, bytes_: list[float], secs: list[float], latest, is_primary: bool) -> None:
        if not self.children:
            return      # the app is closing and has removed the panel's parts already
        if is_primary:
            self.query_one(".lagb", Static).update("primary: lag is measured on its standbys")
            self.query_one(".lags", Static).update("")
            bytes_, secs = [], []
        else:
            b = None if latest is None else latest.replay_lag_bytes
            s = None if latest is None else latest.replay_lag_s
            away = "" if latest is None or latest.connected else " (not streaming; from its slot)"
            self.query_one(".lagb", Static).update(f"bytes: {_b(b)}{away}  max {_b(int(max(bytes_))) if bytes_ else 'unknown'}")
            self.query_one(".lags", Static).update(f"seconds: {_s(s)}  max {_s(max(secs)) if secs else 'unknown'}")
        self.query_one(".sparkb", Sparkline).data = bytes_
        self.query_one(".sparks", Sparkline).data = secs


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "close")]

    def __init__(self, lab_name: str):
        super().__init__()
        self.lab_name = lab_name

    def compose(self) -> ComposeResult:
        rows = ["[bold]pglab top[/]: keys act on the selected node (left/right to select)", ""]
        for a in ACTIONS:
            rows.append(f"[bold]{a.key}[/]  {a.help}\n     [dim]{escape(a.command('NODE', self.lab_name))}[/]")
        rows += [f"[bold]m[/]  failover monitor on/off (declares the primary failed after 2 s)\n"
                 f"     [dim]pglab monitor start --timeout 2 --name {self.lab_name}[/]",
                 f"[bold]l[/]  ledger writer on/off (writes/s and errors; lag moves)\n"
                 f"     [dim]pglab workload ledger --duration 3600 --name {self.lab_name}[/]",
                 "[bold]q[/]  quit: lists whatever is still broken", "", "escape closes this help"]
        yield Static("\n".join(rows), id="help")


class TopApp(App):
    TITLE = "pglab top"
    CSS = """
    #nodes { height: auto; }
    .node { width: 1fr; border: round $secondary; padding: 0 1; height: 13; }
    .node.selected { border: double $accent; }
    #lags { height: auto; }
    .lag { width: 1fr; border: round $secondary; height: 8; padding: 0 1; }
    Sparkline { height: 2; }
    #manager { height: auto; border: round $secondary; padding: 0 1; }
    #writer { height: 1; padding: 0 1; }
    #command { height: 1; padding: 0 1; color: $warning; }
    #events { border: round $secondary; }
    #help { padding: 1 2; background: $panel; border: round $accent; width: 100; height: auto; }
    HelpScreen { align: center middle; }
    """
    BINDINGS = [Binding("left", "select(-1)", "prev node"), Binding("right", "select(1)", "next node"),
                *[Binding(a.key, f"node('{a.name}')", a.name) for a in ACTIONS],
                Binding("m", "monitor", "monitor"), Binding("l", "ledger", "writer"),
                Binding("question_mark", "help", "help"), Binding("q", "quit", "quit")]

    def __init__(self, lab: Lab, *, poll_interval: float = 0.5, monitor_timeout: float = 2.0):
        super().__init__()
        self.lab = lab
        self.poll_interval = poll_interval
        self.nodes = lab.nodes
        self.selected = self.nodes.index(lab.primary) if lab.primary in self.nodes else 0
        self.status: LabStatus | None = None
        self.feed = LagFeed(lab)
        self.writer = Writer(lab)
        self.mon = MonitorSwitch(lab, self._from_monitor, timeout=monitor_timeout)
        self.event_lines: list[str] = []
        self.last_command = ""
        self._polling = False
        self._events_seen = len(lab.ctx.state.events)
        self.saved_events: list[dict] = list(lab.ctx.state.events)
        self.saved_faults: dict[str, list[str]] = dict(lab.ctx.state.faults)
        self.broken: list[str] = []
        self.known_primaries: list[str] = []
        #: the lab's failover manager; "none" (you promote) has no view of its own to show
        self.manager = lab.topology.ha.manager
        self.manager_plain = ""      # the manager panel without markup (tests read it)
        self._leader: str | None = None

    # ---- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="nodes"):
            for n in self.nodes:
                yield NodePanel(n)
        with Horizontal(id="lags"):
            for n in self.nodes:
                yield LagPanel(n)
        if self.manager != "none":
            yield Static("", id="manager")
        yield Static("", id="writer")
        yield Static("", id="command")
        yield RichLog(id="events", markup=False, wrap=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"lab {self.lab.name} ({self.lab.runtime})"
        self._mark_selected()
        self.log_event(f"watching lab {self.lab.name}: press ? for help")
        self.set_interval(self.poll_interval, self.poll)
        self.set_interval(0.2, self.refresh_lag)
        self.poll()

    def on_unmount(self) -> None:
        # however the app ends (q, Ctrl-C, a closed browser tab), no thread of ours outlives it
        self.mon.stop()
        self.writer.stop()
        self.feed.stop()

    # ---- the event log ------------------------------------------------------------------------
    def log_event(self, text: str) -> None:
        line = f"{datetime.now():%H:%M:%S.%f}"[:12] + " " + text
        self.event_lines.append(line)
        self.query_one("#events", RichLog).write(line)

    def _from_monitor(self, line: str) -> None:
        # the monitor's thread: hand the line to the UI thread (unless the app is already gone)
        try:
            text = line.split(" ", 1)[-1]      # without the monitor's own timestamp
            self.call_from_thread(self.log_event, text if text.startswith("monitor:") else "monitor: " + text)
        except RuntimeError:
            pass

    # ---- polling ------------------------------------------------------------------------------
    def poll(self) -> None:
        if not self._polling:
            self._polling = True
            self._poll_worker()

    @work(thread=True, exclusive=True, group="poll")
    def _poll_worker(self) -> None:
        try:
            st = self.lab.status()
        except Exception as e:  # noqa: BLE001 - shown, and the next poll tries again
            self.call_from_thread(self._apply, None, str(e))
            return
        try:
            # faults and events made by other processes too (`pglab fault` in another terminal):
            # read from the lab's saved state, for display only
            saved = lab_state.load(self.lab.name)
            self.saved_events, self.saved_faults = saved.events, saved.faults
        except LabError:
            pass
        # the recorder samples the primary's view: follow a failover (here, off the UI thread,
        # because stopping the old recorder may wait for a query on a frozen node)
        self.feed.follow(st.primary if st.primary in st.primaries else None)
        managed = None
        if self.manager != "none":
            try:
                view = self.lab.ha_view()
                managed = (view, self.lab.disagreements(st, view), None)
            except Exception as e:  # noqa: BLE001 - shown in the panel; the next poll tries again
                managed = (None, {}, e.line() if hasattr(e, "line") else str(e))
        self.call_from_thread(self._apply, st, None, managed)

    def _apply(self, st: LabStatus | None, error: str | None, managed=None) -> None:
        self._polling = False
        if st is None:
            self.log_event(f"status could not be read: {error}")
            return
        if managed is not None:
            self._show_manager(*managed)
        for line in events.diff(self.status, st, self.known_primaries):
            self.log_event(line)
        if st.primaries:
            # remembered across a gap with no primary, so the failover after it is named as one
            self.known_primaries = list(st.primaries)
        new = self.saved_events[self._events_seen:]
        self._events_seen += len(new)
        for e in new:
            self.log_event("lab: " + events.describe_event(e))
        self.status = st
        for p in self.query(NodePanel):
            try:
                n = st.node(p.node)
            except KeyError:
                n = None
            p.show(n, self.saved_faults.get(p.node, []))
        self.writer.tick()
        self._show_writer()

    def _show_manager(self, view, odd: dict[str, str], error: str | None) -> None:
        markup = manager_text(view, odd, error)
        self.manager_plain = Text.from_markup(markup).plain
        self.query_one("#manager", Static).update(markup)
        if view is not None and view.leader != self._leader:
            if self._leader is not None or view.leader is None:
                self.log_event(f"{view.manager}: leader is now {view.leader or 'none'}"
                               + (f" (was {self._leader})" if self._leader else ""))
            self._leader = view.leader

    def refresh_lag(self) -> None:
        primaries = set(self.status.primaries) if self.status else set()
        for panel in self.query(LagPanel):
            b, s, latest = self.feed.history(panel.node)
            panel.show(b, s, latest, panel.node in primaries)

    def _show_writer(self) -> None:
        w = self.query_one("#writer", Static)
        mon = "monitor ON" if self.mon.running else "monitor off (m)"
        if not self.writer.running:
            w.update(f"writer off (l)  |  {mon}")
            return
        ok, bad = self.writer.counts()
        rate = "unknown" if self.writer.rate is None else f"{self.writer.rate:.0f}"
        w.update(f"writer: {rate} writes/s, {ok} acknowledged, {bad} errors  |  {mon}")

    # ---- selection and keys -----------------------------------------------------------------------
    @property
    def selected_node(self) -> str:
        return self.nodes[self.selected]

    def _mark_selected(self) -> None:
        for p in self.query(NodePanel):
            p.set_class(p.node == self.selected_node, "selected")

    def action_select(self, step: int) -> None:
        self.selected = (self.selected + step) % len(self.nodes)
        self._mark_selected()

    def _say_command(self, cmd: str) -> None:
        self.last_command = cmd
        self.query_one("#command", Static).update(f"$ {cmd}")
        self.log_event(f"$ {cmd}")

    def action_node(self, name: str) -> None:
        a = BY_NAME[name]
        node = self.selected_node
        self._say_command(a.command(node, self.lab.name))
        self._act(f"{name} {node}", lambda: a.call(self.lab, node))

    @work(thread=True, group="act")
    def _act(self, what: str, fn) -> None:
        t0 = time.monotonic()
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - a refused or failed action is a lesson, not a crash
            msg = e.line() if hasattr(e, "line") else str(e)
            self.call_from_thread(self.log_event, f"{what}: FAILED: {msg}")
            return
        took = time.monotonic() - t0
        self.call_from_thread(self.log_event, f"{what}: done in {took:.2f}s" + _summary(result))

    def action_monitor(self) -> None:
        if self.manager != "none":
            # a second monitor would race the lab's own manager for every failover
            self.log_event(f"m: this lab's failover manager is {self.manager}; pglab's in-process monitor "
                           "stays off (it would race it). Break the primary and watch the manager act.")
            return
        on = not self.mon.running
        self._say_command(f"pglab monitor {'start' if on else 'stop'} --name {self.lab.name}"
                          + (f" --timeout {self.mon.timeout:g}" if on else ""))
        self._act("monitor " + ("on" if on else "off"), self.mon.toggle)

    def action_ledger(self) -> None:
        on = not self.writer.running
        self._say_command(f"pglab workload ledger --duration 3600 --name {self.lab.name}" if on
                          else "(Ctrl-C stops the ledger writer)")
        self._act("writer " + ("on" if on else "off"), self.writer.toggle)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.lab.name))

    async def action_quit(self) -> None:
        self.log_event("stopping the writer, the monitor and the lag recorder")
        self._wind_down()

    @work(thread=True, group="quit")
    def _wind_down(self) -> None:
        self.mon.stop()
        self.writer.stop()
        self.feed.stop()
        try:
            st = self.lab.status()
        except Exception:  # noqa: BLE001
            st = None
        self.broken = still_broken(self.lab, st)
        self.call_from_thread(self.exit, self.broken)


def _summary(result) -> str:
    if result is None:
        return ""
    if isinstance(result, str):
        return ": " + result
    if isinstance(result, list):
        return ": " + (", ".join(map(str, result)) or "nothing to do")
    for attr in ("new_primary", "method"):
        if hasattr(result, attr):
            return f": {attr.replace('_', ' ')} {getattr(result, attr)}"
    promotion = getattr(result, "promotion", None)
    if promotion is not None:
        return f": new primary {promotion.new_primary} (timeline {promotion.timeline})"
    return ""
