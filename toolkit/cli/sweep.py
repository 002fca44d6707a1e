"""`edgeopt sweep [SPEC.toml]`: the pruning x quantization x target search on Ray Tune (docs/sweep.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..sweep.spec import SweepSpec
from .options import Quiet, default, given, json_flag, print_json, stdout_to_stderr

app = typer.Typer()
SweepJson = json_flag("sweep.json")


def _floats(values: Optional[list[str]], flag: str) -> Optional[list[float]]:
    if not values:
        return None
    from edgeopt.errors import UsageError

    try:
        return [float(x) for v in values for x in v.split(",")]
    except ValueError:
        raise UsageError(f"{flag} takes numbers (repeat the flag or separate with commas), got {values!r}") from None


def _strs(values: Optional[list[str]]) -> Optional[list[str]]:
    return [x for v in values for x in v.split(",") if x] if values else None


@app.command("sweep")
def sweep_cmd(
    ctx: typer.Context,
    spec: Optional[Path] = typer.Argument(None, help="SPEC.toml: [sweep] options and a [space] table (flags win)"),
    out: Path = typer.Option(..., help="results, the front's bundles, best/, and the resumable state (.tune/)"),
    address: Optional[str] = typer.Option(
        None, help="an existing Ray cluster (HOST:PORT); default: RAY_ADDRESS, else a local Ray"
    ),
    cache: Optional[Path] = typer.Option(None, help="stage cache directory, shared by sweeps [default: OUT/.stages]"),
    num_cpus: Optional[int] = typer.Option(None, help="CPUs of the local Ray [default: all]"),
    search: str = typer.Option(default(SweepSpec, "search"), help="grid | optuna"),
    samples: int = typer.Option(default(SweepSpec, "samples"), help="optuna: trials in all"),
    board: list[str] = typer.Option(default(SweepSpec, "boards"), help="board or [groups] name (repeatable)"),
    budget: float = typer.Option(
        default(SweepSpec, "budget"), help="allowed validation-accuracy drop below the dense model, a fraction"
    ),
    model: str = typer.Option(default(SweepSpec, "model"), help="built-in model"),
    data: str = typer.Option(default(SweepSpec, "data"), help="'digits' or an .npz with x, y"),
    epochs: int = typer.Option(default(SweepSpec, "epochs"), help="training epochs of the dense model"),
    concurrency: Optional[int] = typer.Option(None, help="trials at once [default: as many as the CPUs allow]"),
    method: Optional[list[str]] = typer.Option(None, help="space: pruning methods (magnitude, structured)"),
    sparsity: Optional[list[str]] = typer.Option(None, help="space: sparsity targets, fractions >= 0.70"),
    bits: Optional[list[str]] = typer.Option(None, help="space: quantization bits (8, 16, 4)"),
    scheme: Optional[list[str]] = typer.Option(None, help="space: uniform | kmeans"),
    calibrator: Optional[list[str]] = typer.Option(None, help="space: minmax | percentile | entropy"),
    target: Optional[list[str]] = typer.Option(None, help="space: compile targets (`edgeopt targets`)"),
    tune_trials: Optional[list[str]] = typer.Option(None, help="space: MetaSchedule trials (0: untuned)"),
    as_json: SweepJson = False,
    quiet: Quiet = False,
) -> None:
    """Search pruning x quantization x target on Ray Tune for the accuracy / latency / size Pareto
    front, measured on the boards. Ctrl-C, then the same command, resumes."""
    from edgeopt.errors import UsageError

    from ..sweep import require_ray, resolve, run_sweep

    require_ray()  # before anything else: one line says how to get the extra
    # flags given win over SPEC.toml, which wins over SweepSpec's defaults
    flags = given(
        ctx,
        {
            "search": search,
            "samples": samples,
            "board": board,
            "budget": budget,
            "model": model,
            "data": data,
            "epochs": epochs,
            "concurrency": concurrency,
        },
    )
    if "board" in flags:
        flags["boards"] = _strs(flags.pop("board"))
    space = {
        "method": _strs(method),
        "sparsity": _floats(sparsity, "--sparsity"),
        "bits": [int(b) for b in _floats(bits, "--bits")] if bits else None,
        "scheme": _strs(scheme),
        "calibrator": _strs(calibrator),
        "target": _strs(target),
        "tune_trials": [int(t) for t in _floats(tune_trials, "--tune-trials")] if tune_trials else None,
    }
    sweep_spec = resolve(flags, space, spec)
    if num_cpus is not None and num_cpus < 1:
        raise UsageError(f"--num-cpus must be >= 1, got {num_cpus}")
    with stdout_to_stderr():  # Ray's and TVM's chatter never reaches stdout
        doc = run_sweep(sweep_spec, out=out, address=address, cache=cache, num_cpus=num_cpus, quiet=quiet)
    if as_json:
        print_json(doc)
        return
    t = doc["trials"]
    print(
        f"{t['finished']} settings ({t['ok']} measured, {t['failed']} failed); Pareto front: {len(doc['front'])}; "
        f"report: {out / 'report.md'}"
    )
    best = next((r for r in doc["results"] if r["setting_id"] == doc["best"]), None)
    if best:
        b = doc["boards"][0]
        print(
            f"best within budget: {best['label']} ({best['setting_id']}): p50 "
            f"{best['boards'][b]['p50_ms']:.4f} ms on {b}, "
            f"test accuracy {best['test_accuracy']:.4f}, {best['bytes']:,} bytes -> {out / 'best'}"
        )
    else:
        print("no setting met the accuracy budget")
