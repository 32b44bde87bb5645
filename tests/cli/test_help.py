"""Every command's help at 80 columns: option names whole, help texts of one or two lines."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from ohemcli.cli import app

runner = CliRunner()
# Commands whose options all belong to panels and whose help texts fit in two lines.
PANELLED = {("train",), ("compare",), ("bench",)}


def _command_paths(command, path=()):
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(sub, (*path, name))


COMMANDS = list(_command_paths(typer.main.get_command(app)))


def _help(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": ""})
    assert result.exit_code == 0, result.output
    return result.output


def _option_rows(text: str) -> dict[str, int]:
    """Option name -> number of lines its row takes in the rendered panels."""
    rows: dict[str, int] = {}
    current = None
    for line in text.splitlines():
        inner = line.strip("│ ")
        if not line.startswith("│"):
            current = None
        elif m := re.match(r"(?:\* +)?(--[\w-]+|[\w.]+)(?=\s)", inner):
            current = m.group(1)
            rows[current] = 1
        elif current is not None and inner:
            rows[current] += 1
    return rows


def test_every_command_is_listed():
    names = {p[0] for p in COMMANDS if p}
    assert {"train", "compare", "bench", "report", "eval", "data"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "ohem")
def test_no_option_name_is_cut_short_at_80_columns(path):
    text = _help(path)
    assert max(len(line) for line in text.splitlines()) <= 80
    cut = [line for line in text.splitlines() if re.search(r"-[\w-]*…", line)]
    assert not cut, "\n".join(cut)
    assert "…" not in text


@pytest.mark.parametrize("path", sorted(PANELLED))
def test_help_texts_fit_in_two_lines_and_options_sit_in_panels(path):
    text = _help(path)
    rows = _option_rows(text)
    assert "--data" in rows and "--config" in rows
    too_long = {name: n for name, n in rows.items() if n > 2}
    assert not too_long
    panels = set(re.findall(r"╭─ (\w+) ─", text))
    assert {"Data", "Model", "Training", "Output"} <= panels
    assert "Sampler" in panels


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "ohem")
def test_every_commands_help_texts_fit_in_two_lines(path):
    rows = _option_rows(_help(path))
    assert not {name: n for name, n in rows.items() if n > 2}


def test_row_parser_counts_wrapped_lines():
    text = "╭─ Data ─╮\n│ --a   x  one │\n│          two │\n│ --b   y  one │\n╰──╯\n"
    assert _option_rows(text) == {"--a": 2, "--b": 1}
