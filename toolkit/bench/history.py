"""A JSON-lines history of benchmark runs: one line per `edgeopt bench` run (the report without
per-call samples, plus where report.json was written). Kept in the user data dir
(`$EDGEOPT_DATA_DIR`, else `$XDG_DATA_HOME/edgeopt`, else `~/.local/share/edgeopt`) as
history.jsonl, or in the file `--history FILE` names."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from edgeopt import paths
from edgeopt.errors import InputError

from .report import SCHEMA, strip_samples

FILE = "history.jsonl"


def data_dir() -> Path:
    return paths.data_dir()


def default_path() -> Path:
    return data_dir() / FILE


def append(doc: dict, path: Path, report_dir: Path | None) -> dict:
    entry = strip_samples(doc)
    entry["report_dir"] = str(report_dir.resolve()) if report_dir else None
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with os.fdopen(fd, "a") as f:  # one write of one line: concurrent runs do not interleave
        f.write(line)
    return entry


def load(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    entries = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(
                f"history file {path} line {i} is not JSON: {exc}",
                hint="remove or fix that line; every line is one run's report",
            ) from None
    return entries


def resolve(ref: str, history: Path) -> dict:
    """A run: a report.json path, a report directory, `@N` (history entry N, 0-based; negative
    counts from the end: @-1 is the last run) or a run id (or a unique prefix of one)."""
    p = Path(ref)
    if p.is_dir() and (p / "report.json").is_file():
        p = p / "report.json"
    if p.is_file():
        try:
            doc = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read report {p}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise InputError(
                f"{p} is not a bench report (schema {SCHEMA})",
                hint="pass the report.json that `edgeopt bench ... --out DIR` wrote",
            )
        return doc
    entries = load(history)
    m = re.fullmatch(r"@(-?\d+)", ref)
    if m:
        i = int(m.group(1))
        if not entries:
            raise InputError(
                f"run {ref}: the history {history} is empty",
                hint="run `edgeopt bench` first, or pass report.json paths",
            )
        try:
            return entries[i]
        except IndexError:
            raise InputError(
                f"run {ref}: the history {history} has {len(entries)} run(s)", hint="@-1 is the last run, @0 the first"
            ) from None
    if re.fullmatch(r"[0-9a-f]{4,12}", ref):
        hits = [e for e in entries if str(e.get("id", "")).startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise InputError(f"run id {ref!r} matches {len(hits)} runs in {history}", hint="give more of the id")
    raise InputError(
        f"no run {ref!r}: not a report.json, a report directory, @N or a run id in {history}",
        hint="`edgeopt report history` lists the runs",
    )
