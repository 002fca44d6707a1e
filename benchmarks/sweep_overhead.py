"""The engine's overhead: the same 8 settings run (a) by `edgeopt sweep` on a local Ray and (b) one
after another by `edgeopt run`'s Python API (pipeline.run) in one process; wall time of each and
the ratio sweep / sequential. Goal: the sweep no slower than sequential by more than 15% on 2 cores.

    python benchmarks/sweep_overhead.py [--epochs 10] [--out benchmarks/results/sweep_overhead.json]
                                        [--markdown docs/benchmarks.md]

The 8 settings: sparsity {0.70, 0.80} x method {magnitude, structured} x calibrator {minmax,
percentile}, the built-in MLP on digits, the host target, the local board, the same training and
pruning schedule in both (RunConfig's defaults for pruning). What each side does beyond the
stages is its own: `edgeopt run` measures with the agent's eval + bench verbs; a sweep trial
measures the setting and the original model with bench's compare protocol (TVM and onnxruntime),
and shares the stages that settings have in common (one training instead of 8). The sweep starts
with an empty stage cache, so nothing is reused from an earlier run. A benchmark, not a test: it
prints what it measured here and now, and asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPARSITY = (0.70, 0.80)
METHODS = ("magnitude", "structured")
CALIBRATORS = ("minmax", "percentile")
GOAL = 1.15
SECTION = "## sweep_overhead.py: the sweep engine vs `edgeopt run` one after another"


def settings() -> list[dict]:
    return [
        {"sparsity": s, "method": m, "calibrator": c} for s, m, c in itertools.product(SPARSITY, METHODS, CALIBRATORS)
    ]


def sequential(epochs: int, budget: float) -> tuple[float, list[dict]]:
    from edgeopt.toolkit.config import RunConfig
    from edgeopt.toolkit.pipeline import run

    rows, t0 = [], time.perf_counter()
    for s in settings():
        t = time.perf_counter()
        report = run(RunConfig(epochs=epochs, budget=budget, **s))
        rows.append({**s, "seconds": round(time.perf_counter() - t, 2), "ok": bool(report)})
    return time.perf_counter() - t0, rows


def sweep(epochs: int, budget: float, num_cpus: int | None) -> tuple[float, dict, float]:
    """(wall seconds, sweep.json, seconds from the start to the first trial's start)."""
    from edgeopt.toolkit.sweep import resolve, run_sweep

    spec = resolve(
        {"epochs": epochs, "budget": budget},
        {"sparsity": list(SPARSITY), "method": list(METHODS), "calibrator": list(CALIBRATORS)},
    )
    with tempfile.TemporaryDirectory(prefix="edgeopt-sweep-bench-") as tmp:
        t0, wall0 = time.perf_counter(), time.time()
        doc = run_sweep(spec, out=Path(tmp) / "out", num_cpus=num_cpus, quiet=False)
        seconds = time.perf_counter() - t0
        starts = [json.loads(line)["time"] for line in (Path(tmp) / "out" / "attempts.jsonl").read_text().splitlines()]
        return seconds, doc, min(starts) - wall0


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def markdown(res: dict) -> str:
    s, q = res["sweep"], res["sequential"]
    return f"""{SECTION}

`python benchmarks/sweep_overhead.py --epochs {res["epochs"]} --out benchmarks/results/sweep_overhead.json`
on {res["machine"]}; Ray {res["versions"]["ray"]}, Optuna {res["versions"]["optuna"]}. One run each,
sequential first, the machine shared with other work (read the ratio, not the seconds).
The same 8 settings (sparsity 0.70/0.80 x magnitude/structured x minmax/percentile, the MLP on
digits, {res["epochs"]} training epochs, host target, local board):

| | wall time (s) | trials at once | stages built / reused |
| --- | ---: | ---: | --- |
| `edgeopt run` x 8, one process | {q["seconds"]:.1f} | 1 | every stage 8 times |
| `edgeopt sweep`, local Ray | {s["seconds"]:.1f} | {s["concurrency"]} | {s["stages_built"]} / {s["stages_reused"]} |

**Ratio sweep / sequential: {res["ratio"]:.2f}** (goal <= {GOAL:.2f}: {"met" if res["ratio"] <= GOAL else "NOT met"}).
The sweep's time includes starting and stopping Ray ({s["ray_start_s"]:.1f} s to the first trial)
and its report; it trains the dense model once (the stage cache) where 8 runs train it 8 times,
and it runs two trials at once on 2 cores, while its measurement does more than a run's (the
setting and the original model, TVM and onnxruntime: the speedup in its report). So the ratio is
the whole command against the whole loop, not the engine's overhead alone: what Ray itself costs
shows as the time to the first trial; the rest is paid back by the shared stages and the parallel
trials.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument(
        "--budget", type=float, default=0.5, help="quantization budget of the runs (wide: every setting finishes)"
    )
    ap.add_argument("--num-cpus", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sweep_overhead.json")
    ap.add_argument("--markdown", type=Path, help="replace (or add) this benchmark's section in that file")
    args = ap.parse_args()

    from importlib.metadata import version

    seq_s, seq_rows = sequential(args.epochs, args.budget)
    print(f"sequential: {seq_s:.1f} s", file=sys.stderr)
    sw_s, doc, to_first = sweep(args.epochs, args.budget, args.num_cpus)
    print(f"sweep: {sw_s:.1f} s", file=sys.stderr)
    cpus = int(doc["cluster"]["nodes"][0]["resources"].get("CPU", 1))
    res = {
        "machine": machine(),
        "epochs": args.epochs,
        "settings": settings(),
        "versions": {"ray": version("ray"), "optuna": version("optuna"), "edgeopt": version("edgeopt")},
        "sequential": {"seconds": round(seq_s, 2), "runs": seq_rows},
        "sweep": {
            "seconds": round(sw_s, 2),
            "trials_ok": doc["trials"]["ok"],
            "stages_built": doc["stages"]["built"],
            "stages_reused": doc["stages"]["reused"],
            "by_stage": doc["stages"]["by_stage"],
            "concurrency": doc["spec"]["concurrency"] or int(cpus / doc["spec"]["cpus_per_trial"]),
            "trial_seconds": sorted(r.get("seconds", 0) for r in doc["results"]),
            "ray_start_s": round(to_first, 2),
        },
        "ratio": round(sw_s / seq_s, 3),
        "goal": GOAL,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: res[k] for k in ("machine", "ratio", "goal")}))
    print(f"sequential {seq_s:.1f} s, sweep {sw_s:.1f} s: ratio {res['ratio']:.2f} (goal <= {GOAL})")
    if args.markdown:
        text = args.markdown.read_text() if args.markdown.is_file() else ""
        head, _, tail = text.partition(SECTION)
        rest = tail.split("\n## ", 1)[1] if "\n## " in tail else ""
        args.markdown.write_text(head.rstrip() + "\n\n" + markdown(res) + ("\n## " + rest if rest else ""))


if __name__ == "__main__":
    main()
