"""The command line as a whole: every command is reachable by the fast path of `main()`, has help,
and is documented; a command that needs a lab and finds none says so in one line."""
from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.testing import CliRunner

import lab.cli
from lab.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent


def _tree() -> dict[str, object]:
    group = typer.main.get_command(lab.cli.app)
    return dict(group.commands)  # type: ignore[attr-defined]


def test_every_command_is_in_the_start_up_map():
    """main() imports only the modules named for the first word: a command missing from the map
    would be unknown on the command line while the tests (which load everything) pass."""
    assert set(_tree()) == set(COMMANDS)


def test_every_command_has_help():
    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, f"{path} {name}")
        else:
            yield path, cmd
    missing = [p for name, c in _tree().items() for p, leaf in walk(c, name) if not (leaf.help or "").strip()]
    assert missing == []


def test_every_command_is_documented():
    docs = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    missing = [name for name in _tree() if not re.search(rf"pglab {re.escape(name)}\b", docs)]
    assert missing == []



def test_a_missing_lab_is_one_line_and_exit_2():
    r = CliRunner().invoke(lab.cli.app, ["status", "--name", "no-such-lab-x"])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "no lab named 'no-such-lab-x'" in r.output
