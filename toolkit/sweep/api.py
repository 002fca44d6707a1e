"""run_sweep(spec, out=...): validate, join or start Ray, run/resume the trials, write the report."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from edgeopt.errors import InputError, MissingExtraError, SweepInterrupted

from .spec import SweepSpec

EXTRA_HINT = "pip install 'edgeopt[sweep]'  (Ray Tune and Optuna)"


def require_ray(*, optuna: bool = False) -> None:
    """One clear line instead of an ImportError when the optional extra is missing."""
    missing = [m for m in (("ray", "ray.tune") + (("optuna",) if optuna else ())) if not _importable(m)]
    if missing:
        raise MissingExtraError(
            f"edgeopt sweep needs the optional extra 'sweep' ({', '.join(missing)} not installed)", hint=EXTRA_HINT
        )


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def run_sweep(
    spec: SweepSpec,
    *,
    out: Path,
    address: str | None = None,
    cache: Path | None = None,
    num_cpus: int | None = None,
    quiet: bool = True,
) -> dict:
    """Returns the sweep document (also OUT/sweep.json). Raises SweepInterrupted after Ctrl-C
    (the state is saved: the same call resumes)."""
    from ..bench.fleet import expand_boards
    from .spec import Search

    require_ray(optuna=spec.search is Search.optuna)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    boards = expand_boards(spec.boards)  # a [groups] entry -> its boards; a typo fails here
    cache = cache or out / ".stages"  # this sweep's stages; --cache DIR shares them between sweeps
    out.mkdir(parents=True, exist_ok=True)
    from . import engine, report
    from .cache import StageCache

    started = time.perf_counter()
    cluster = engine.connect(address=address, boards=boards, num_cpus=num_cpus)
    try:
        records, interrupted = engine.run_trials(spec, out=out, cache=cache, boards=boards, quiet=quiet)
    finally:
        import ray

        ray.shutdown()
    if interrupted:
        raise SweepInterrupted(
            f"sweep interrupted: {len(records)} trial(s) finished and kept in {out}",
            hint="run the same command again to resume; finished trials are not re-run",
        )
    doc = report.build(
        spec=spec,
        records=records,
        boards=boards,
        cluster=cluster,
        stage_events=StageCache(cache).events(),
        seconds=time.perf_counter() - started,
    )
    report.write(doc, out)
    return doc
