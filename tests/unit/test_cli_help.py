"""Every command's --help renders: the help texts go through Rich's markup, where a usage
written as `FROM:TO[:PORT[/PROTO]]` reads as a closing tag and `onepane apps deploy --help`
crashed with a traceback."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from onepane.cli import app


def commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's words, groups included (typer carries a click of its own)."""
    out = [path]
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            out += commands(cmd, (*path, name))
        else:
            out.append((*path, name))
    return out


def test_every_command_s_help_renders() -> None:
    paths = commands(typer.main.get_command(app))
    assert ("apps", "deploy") in paths and len(paths) > 50
    runner = CliRunner()
    for path in paths:
        r = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert r.exit_code == 0, (path, r.output[-400:], r.exception)
        assert "Usage" in r.output, path
