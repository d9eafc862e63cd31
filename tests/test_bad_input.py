"""Bad input: one clear line, exit status 2, nothing left behind."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.runtime.leftovers import leftovers

from .conftest import unique

runner = CliRunner()


def fails_cleanly(args: list[str], expect: str, name: str | None = None) -> str:
    r = runner.invoke(app, args)
    out = r.output
    assert r.exit_code == 2, out
    assert "Traceback" not in out
    first = [line for line in out.splitlines() if line.startswith("pglab: error:")]
    assert len(first) == 1, out
    assert expect in first[0], first[0]
    if name:
        assert leftovers(name) == []
    return first[0]


def test_invalid_lab_name():
    fails_cleanly(["up", "--name", "Bad_Name", "--runtime", "local"], "invalid lab name 'Bad_Name'")


def test_unknown_runtime():
    fails_cleanly(["up", "--name", unique(), "--runtime", "vm"], "unknown runtime 'vm'")


def test_standbys_out_of_range():
    fails_cleanly(["up", "--name", unique(), "--runtime", "local", "--standbys", "12"], "--standbys 12 is out of range")


def test_bad_sync_spec():
    n = unique()
    fails_cleanly(["up", "--name", n, "--runtime", "local", "--sync", "FIRST 1 (s7)"], "s7, which is not a standby", n)


def test_malformed_topology_says_file_and_line(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text('[[nodes]]\nname = "p1"\n[[nodes]\nname = "s1"\n')
    line = fails_cleanly(["up", "--name", unique(), "--runtime", "local", "--topology", str(f)], "broken.toml")
    assert "line 3" in line


def test_brackets_in_an_error_line_survive(tmp_path):
    """Messages are printed literally: "[[nodes]]" is not rich markup."""
    f = tmp_path / "empty.toml"
    f.write_text("nodes = []\n")
    n = unique()
    line = fails_cleanly(["up", "--name", n, "--runtime", "local", "--topology", str(f)], "no [[nodes]]", n)
    assert line.startswith("pglab: error: ") and "[/" not in line


def test_a_version_that_is_not_here_says_where_it_comes_from():
    n = unique()
    line = fails_cleanly(["up", "--name", n, "--runtime", "local", "--pg", "16"], "PostgreSQL 16 is not installed", n)
    assert "apt-get install postgresql-16" in line and "--runtime docker" in line


def test_unknown_setting_is_refused_with_a_suggestion(runtime, tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('[settings]\nshared_bufers = "64MB"\n[[nodes]]\nname = "p1"\n[[nodes]]\nname = "s1"\n')
    n = unique()
    line = fails_cleanly(["up", "--name", n, "--runtime", runtime, "--topology", str(f)], "unknown setting 'shared_bufers'", n)
    assert "shared_buffers" in line


def test_existing_lab_name(make_lab):
    lab = make_lab(standbys=0)
    fails_cleanly(["up", "--name", lab.name, "--runtime", lab.runtime], f"a lab named '{lab.name}' already exists")
    assert lab.status().nodes[0].role.value == "primary"  # the existing lab is untouched


def test_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        f = tmp_path / "t.toml"
        f.write_text(f'[[nodes]]\nname = "p1"\nport = {port}\n')
        n = unique()
        fails_cleanly(["up", "--name", n, "--runtime", "local", "--topology", str(f)], f"port {port} (node p1) is in use", n)


def test_missing_server_binaries(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('[postgres]\nbindir = "/nonexistent/bin"\n[[nodes]]\nname = "p1"\n')
    n = unique()
    fails_cleanly(["up", "--name", n, "--runtime", "local", "--topology", str(f)], "PostgreSQL server programs not found", n)


def test_failure_half_way_cleans_up_and_shows_the_log(runtime, tmp_path):
    # the primary starts; the standby's recovery_min_apply_delay is invalid, so it fails to start
    f = tmp_path / "t.toml"
    f.write_text('[[nodes]]\nname = "p1"\n[[nodes]]\nname = "s1"\napply_delay = "soon"\n')
    n = unique()
    r = runner.invoke(app, ["up", "--name", n, "--runtime", runtime, "--topology", str(f)])
    assert r.exit_code == 2
    assert "the server of node s1 did not start" in r.output
    assert "recovery_min_apply_delay" in r.output  # the server's own log line
    assert leftovers(n) == []


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_during_up_leaves_nothing(runtime, sig):
    """Ctrl-C, or SIGTERM to pglab run as a script's background job (which starts with SIGINT
    ignored, so that SIGTERM is the only way to interrupt it), cleans up what up had made."""
    n = unique()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "lab", "up", "--name", n, "--runtime", runtime],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         preexec_fn=_ignore_sigint if sig == "SIGTERM" else None)
    # wait until the lab has started making things, then interrupt
    deadline = time.monotonic() + 30
    while not leftovers(n) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(getattr(signal, sig))
    out, _ = p.communicate(timeout=60)
    if f"pglab down --name {n}" in out:
        # up had finished and said how to reach the lab: the lab stays, whether the signal then found the command
        # returning (0) or the interpreter already shutting down (killed by the signal itself)
        assert p.returncode in (0, 130, -getattr(signal, sig)), out
        subprocess.run([sys.executable, "-m", "lab", "down", "--name", n], check=True, capture_output=True)
    else:
        assert p.returncode == 130, out
        assert "interrupted" in out
    assert leftovers(n) == []


def test_every_command_has_help():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    import typer.main
    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        assert cmd.help or cmd.short_help, f"command {name} has no help"
        assert runner.invoke(app, [name, "--help"]).exit_code == 0


@pytest.mark.parametrize("args", [["status"], ["lag"], ["dsn", "p1"], ["psql"]])
def test_commands_on_a_missing_lab(args):
    n = unique()
    fails_cleanly(args + ["--name", n], f"no lab named '{n}'", n)
