"""Where a new user lands (issue 18): `edgeopt run` with default options, and with `--fast`, on
every model family, against onnxruntime running the ORIGINAL dense fp32 model on the same board in
the same run (the report's `speedup_vs_original`, > 1 is faster).

    python benchmarks/default_speed.py [--families mlp,cnn,...] [--out benchmarks/results/default_speed.json]
                                       [--markdown docs/benchmarks.md] [--resume]

Families: the built-in `mlp`, `cnn`, `resnet` (trained on digits by the run, as `edgeopt run
--model NAME` does) and the four a user brings (toolkit/examples.py: `own-mobilenet` with depthwise
convolutions, `own-kws` with 1-D convolutions, `own-resnet`, `own-mlp`; trained here, saved with
torch.save, their data as an .npz, run as `edgeopt run --model FILE.pt --data FILE.npz`). Host
target, local board. Per family and setting: the speedup, both p50s, the accuracy drop (dense
torch model -> the bundle on the board, on the test split; the run's default budget is
`budget` in the JSON) and the compile time (the run's `compile` stage: TVM, no tuning). One run,
each run's ratio measured side by side by the board agent; a benchmark, not a test: it asserts
nothing, and a failed run is recorded with its error. The JSON is written after every run; on a
busy machine a stopped benchmark goes on with --resume (each run records when it finished).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUILTIN = ("mlp", "cnn", "resnet")
OWN = ("mobilenet", "kws", "resnet", "mlp")
CONVOLUTIONAL = {"cnn", "resnet", "own-mobilenet", "own-kws", "own-resnet"}
SETTINGS = {"default": {}, "fast": {"fast": True}}
SECTION = "## default_speed.py: `edgeopt run` vs onnxruntime on the original model"
GOALS = {"default": 1.0, "fast": 3.0}  # fast: for the convolutional families


def families() -> list[str]:
    return [*BUILTIN, *(f"own-{f}" for f in OWN)]


def own_model(family: str, workdir: Path) -> dict:
    """A user's model file and data file for an own-* family (trained here, seeded)."""
    import numpy as np
    import torch
    from edgeopt.toolkit import examples

    name = family.removeprefix("own-")
    data = examples.make_data(name)
    np.savez(workdir / f"{name}.npz", **data)
    torch.save(examples.trained(name, data).eval(), workdir / f"{name}.pt")
    return {"model": str(workdir / f"{name}.pt"), "data": str(workdir / f"{name}.npz")}


def one_run(flags: dict) -> dict:
    from edgeopt.toolkit.config import resolve
    from edgeopt.toolkit.pipeline import run
    from edgeopt.toolkit.progress import Progress

    cfg = resolve(flags)
    t0 = time.perf_counter()
    try:
        rep = run(cfg, progress=Progress(quiet=True))
    except Exception as exc:  # recorded, not raised: the table shows what failed
        return {
            "error": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exc(limit=3),
            "seconds": round(time.perf_counter() - t0, 1),
            "budget": cfg.budget,
        }
    acc, vs = rep["accuracy"], rep["original"]
    return {
        "speedup_vs_original": vs["speedup_vs_original"],
        "slower_than_original": vs["slower_than_original"],
        "lever": vs.get("lever"),
        "p50_ms": rep["latency_ms"]["p50"],
        "original_p50_ms": vs.get("p50_ms"),
        "accuracy": {k: acc[k] for k in ("dense", "pruned", "final", "board")},
        "accuracy_drop": round(acc["dense"] - acc["board"], 4),  # dense torch -> the bundle on the board
        "quantization_drop": round(acc["pruned"] - acc["final"], 4),
        "budget": cfg.budget,
        "within_budget": acc["dense"] - acc["board"] <= cfg.budget + 1e-9,
        "test_samples": acc["test_samples"],
        "sparsity": rep["sparsity"]["global"],
        "method": rep["sparsity"]["method"],
        "macs": rep["macs"],
        "compile_s": rep["timings_s"].get("compile"),
        "prune_s": rep["timings_s"].get("prune"),
        "seconds": round(time.perf_counter() - t0, 1),
        "threads": rep["board"]["threads"],
        "quantization_path": rep["quantization"]["path"],
    }


def machine() -> str:
    import os
    import platform

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _cell(r: dict | None, key: str, fmt: str) -> str:
    if r is None:
        return "not run"
    return "failed" if "error" in r else (format(r[key], fmt) if r.get(key) is not None else "n/a")


def markdown(doc: dict) -> str:
    lines = [
        SECTION,
        "",
        f"`python benchmarks/default_speed.py` on {doc['machine']}; {doc['versions']}. "
        + (f"Runs: {doc['runs']}." if doc.get("runs") else f"One run ({doc['created']}),"),
        "host target, the local board (the same machine), the machine shared with other work (read the ratios).",
        "Speedup = onnxruntime's p50 on the user's original dense fp32 model / the bundle's p50, both",
        "timed by the board agent in the same run (> 1: faster than where the user started). Drop = dense",
        "accuracy (torch) - the bundle's accuracy on the board, test split; budget = the run's default",
        f"`budget` ({doc['budget']}). Compile = the run's TVM compile stage (no tuning).",
        "",
        "| family | default speedup | `--fast` speedup | default drop | `--fast` drop | default compile (s) "
        "| `--fast` compile (s) | `--fast` run (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fam, r in doc["results"].items():
        d, f = r.get("default"), r.get("fast")
        flag = lambda x: " **SLOWER**" if x and x.get("slower_than_original") else ""  # noqa: E731
        lines.append(
            f"| {fam} | {_cell(d, 'speedup_vs_original', '.2f')}{flag(d)} | "
            f"{_cell(f, 'speedup_vs_original', '.2f')}{flag(f)} "
            f"| {_cell(d, 'accuracy_drop', '+.4f')} | {_cell(f, 'accuracy_drop', '+.4f')} "
            f"| {_cell(d, 'compile_s', '.1f')} | {_cell(f, 'compile_s', '.1f')} | {_cell(f, 'seconds', '.0f')} |"
        )
    ok = {(fam, s): r[s] for fam, r in doc["results"].items() for s in r if "error" not in r[s]}
    if ok:
        dflt = [v["speedup_vs_original"] for (f, s), v in ok.items() if s == "default"]
        fast = ", ".join(
            f"`{f}` {v['speedup_vs_original']:.2f}x" for (f, s), v in ok.items() if s == "fast" and f in CONVOLUTIONAL
        )
        worst = max(ok.items(), key=lambda kv: kv[1]["accuracy_drop"])
        lines += [
            "",
            "Reading it:",
            "",
            f"- **Default** (magnitude pruning 70%, int8 PTQ, the fused int8 kernels, no tuning): "
            f"{min(dflt):.2f}x to {max(dflt):.2f}x the speed of the original (goal >= {GOALS['default']}).",
            f"- **`--fast`** (structured 70%, distillation, a longer fine-tune) on the convolutional "
            f"families: {fast} (goal >= {GOALS['fast']}).",
            f"- **Accuracy**: the largest drop is {worst[1]['accuracy_drop']:+.4f} ({worst[0][0]}, "
            f"{worst[0][1]}), budget {doc['budget']}. The pruning stage spends at most half the budget "
            "(validation accuracy; past it, recovery rounds distilled from the dense model) and one global "
            "magnitude threshold stops at 90% in any layer (docs/cli.md, `prune --budget`, `--scope`).",
            "- Speedups are p50 ratios on a shared 2-core machine: read them +-20%; each ratio's two "
            "p50s come from the same agent call.",
        ]
    failed = [(fam, s, r[s]["error"]) for fam, r in doc["results"].items() for s in r if "error" in r[s]]
    if failed:
        lines += ["", "Failed runs: " + "; ".join(f"{fam} {s}: {e}" for fam, s, e in failed)]
    lines.append("")
    return "\n".join(lines)


def _replace_section(path: Path, section: str) -> None:
    text = path.read_text() if path.is_file() else ""
    head, _, tail = text.partition(SECTION)
    # the section ends at the next heading or at the Arm section's marker (arm_speed.py owns the rest)
    ends = [i for i in (tail.find("\n## "), tail.find("\n<!-- ")) if i >= 0]
    rest = tail[min(ends) + 1 :] if ends else ""
    path.write_text(head.rstrip() + "\n\n" + section + ("\n" + rest if rest else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(families()), help="comma-separated, from: " + ", ".join(families()))
    ap.add_argument("--settings", default="default,fast")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "default_speed.json")
    ap.add_argument(
        "--markdown",
        type=Path,
        default=Path(__file__).parents[1] / "docs" / "benchmarks.md",
        help="replace (or add) this benchmark's section in that file",
    )
    ap.add_argument("--resume", action="store_true", help="keep the runs already in --out (a run stopped part way)")
    args = ap.parse_args()

    from importlib.metadata import version

    from edgeopt.toolkit.config import RunConfig

    old = json.loads(args.out.read_text()) if args.resume and args.out.is_file() else {}
    doc = {
        "machine": machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": ", ".join(f"{p} {version(p)}" for p in ("apache-tvm", "onnxruntime", "torch")),
        "budget": RunConfig().budget,
        "goals": GOALS,
        "convolutional": sorted(CONVOLUTIONAL),
        "results": old.get("results", {}),
    }
    if old.get("runs"):  # how a resumed table came about stays with it
        doc["runs"] = old["runs"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeopt-default-speed-") as tmp:
        for fam in args.families.split(","):
            todo = [s for s in args.settings.split(",") if s not in doc["results"].get(fam, {})]
            if not todo:
                continue
            base = own_model(fam, Path(tmp)) if fam.startswith("own-") else {"model": fam}
            for setting in todo:
                r = one_run({**base, **SETTINGS[setting]})
                r["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                doc["results"].setdefault(fam, {})[setting] = r
                print(
                    json.dumps({"family": fam, "setting": setting, **{k: v for k, v in r.items() if k != "trace"}}),
                    file=sys.stderr,
                    flush=True,
                )
                args.out.write_text(json.dumps(doc, indent=2) + "\n")  # after every run: a stop keeps what ran
    print(markdown(doc))
    if args.markdown:
        _replace_section(args.markdown, markdown(doc))


if __name__ == "__main__":
    main()
