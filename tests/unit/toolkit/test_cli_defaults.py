"""One source for every default: what `edgeopt CMD --help` shows as an option's default is the
default of that stage's config model, and docs/cli.md and docs/config.md say the same.

The help lines are the ones `--help` prints (each option's click help record, unwrapped)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from edgeopt.toolkit.bench.options import BenchOptions
from edgeopt.toolkit.cli.main import app
from edgeopt.toolkit.cli.options import default
from edgeopt.toolkit.config import CompileConfig, RunConfig
from edgeopt.toolkit.prune import PruneConfig
from edgeopt.toolkit.quantize import QuantConfig
from edgeopt.toolkit.sweep.spec import SweepSpec

DOCS = Path(__file__).resolve().parents[3] / "docs"

# command -> (its config model, option name -> field name where they differ)
MODELS = {
    "run": (RunConfig, {}),
    "prune": (PruneConfig, {"epochs": "epochs_per_step"}),
    "quantize": (QuantConfig, {}),
    "compile": (CompileConfig, {"trials": "tune_trials"}),
    "bench": (BenchOptions, {}),
    "sweep": (SweepSpec, {"board": "boards"}),
}
# options whose default is another model's (the stage before, or the run's training)
OTHER = {
    ("prune", "data"): (RunConfig, "data"),
    ("prune", "train_epochs"): (RunConfig, "epochs"),
    ("quantize", "data"): (RunConfig, "data"),
}
# defaults that depend on the mode, said in words: bench --baseline (none for one bundle, a report's for several)
IN_WORDS = {("bench", "baseline")}


def help_defaults(command: str) -> dict[str, str]:
    """option name -> the default `edgeopt COMMAND --help` shows (options showing none left out)."""
    root = typer.main.get_command(app)
    ctx = typer.Context(root, info_name="edgeopt")
    cmd = root.get_command(ctx, command)
    sub = typer.Context(cmd, parent=ctx, info_name=command)
    out = {}
    for p in cmd.params:
        record = p.get_help_record(sub)
        m = re.search(r"\[default: ([^\]]*)\]\s*$", record[1]) if record else None
        if m:
            out[p.name] = m.group(1)
    return out


def shown(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


@pytest.mark.parametrize("command", sorted(MODELS))
def test_help_defaults_are_the_models(command):
    model, renames = MODELS[command]
    defaults = help_defaults(command)
    compared = 0
    for option, text in defaults.items():
        if (command, option) in IN_WORDS:
            continue
        source = OTHER.get((command, option)) or (model, renames.get(option, option))
        try:
            expected = default(*source)
        except KeyError:  # an option of this command only (e.g. --freeze, --mode): no model holds it
            continue
        if expected is None:  # "not set", said in words ("all its cores")
            continue
        assert text == shown(expected), f"{command} --{option}: help says {text}, {source[0].__name__} has {expected}"
        compared += 1
    assert compared >= 3, f"{command}: only {compared} defaults compared: {defaults}"


def test_run_shows_the_epochs_it_trains():
    assert help_defaults("run")["epochs"] == str(RunConfig().epochs)
    assert help_defaults("run")["budget"] == str(QuantConfig().budget)


def doc_rows(path: Path, heading: str) -> dict[str, str]:
    """`| \\`--name ...\\` | default | ...` rows of the table under `heading`: name -> default."""
    text = path.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    rows = {}
    for line in text[start : end if end > 0 else None].splitlines():
        cells = [c.strip() for c in line.replace("\\|", "/").strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`-{0,2}([a-z0-9-]+)", cells[0])
        if len(names) == 1:
            rows[names[0].replace("-", "_")] = cells[1].strip("`")
    return rows


def same(doc: str, value) -> bool:
    try:
        return float(doc) == float(value)
    except (TypeError, ValueError):
        return doc == str(value).lower() if isinstance(value, bool) else doc == str(value)


def comparable(doc: str) -> bool:
    """A plain value ("40", "minmax", "false"); not prose ("a free port", "off", "all cores")."""
    return bool(re.fullmatch(r"[\w.]+", doc)) and doc not in ("off", "required", "none")


@pytest.mark.parametrize("command", ["run", "prune", "quantize", "bench"])
def test_cli_md_says_what_help_says(command):
    shown_defaults = help_defaults(command)
    rows = doc_rows(DOCS / "cli.md", f"## `edgeopt {command}")
    compared = [n for n, d in rows.items() if comparable(d) and n in shown_defaults]
    for name in compared:
        assert same(rows[name], shown_defaults[name]), (
            f"docs/cli.md {command} --{name}: {rows[name]}, --help: {shown_defaults[name]}"
        )
    assert len(compared) >= 3, rows


def test_config_md_says_what_run_config_says():
    rows = doc_rows(DOCS / "config.md", "## Run config")
    compared = [k for k, d in rows.items() if comparable(d)]
    for key in compared:
        assert same(rows[key], default(RunConfig, key)), (
            f"docs/config.md {key}: {rows[key]}, RunConfig: {default(RunConfig, key)}"
        )
    assert len(compared) >= 15, rows
