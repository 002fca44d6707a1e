"""Structured pruning of the built-in LeNet-5 `cnn`: accuracy, and TVM-compiled latency of the
dense and pruned models measured side by side in one run; plus the sensitivity-vs-uniform
allocation and the distillation comparisons at the same fine-tuning budget.

    python benchmarks/prune_cnn.py [--out results.json] [--seeds 0 1 2]

A benchmark, not a test: it prints ratios measured here and now, and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeopt.compile import compile_onnx, get_target  # noqa: E402
from edgeopt.compile.timing import HostTimer  # noqa: E402
from edgeopt.toolkit.data import load_digits  # noqa: E402
from edgeopt.toolkit.export import export_onnx  # noqa: E402
from edgeopt.toolkit.inputs import train_builtin  # noqa: E402
from edgeopt.toolkit.prune import Allocation, Method, PruneConfig, Schedule, Scope, prune  # noqa: E402


def latency(models: dict, data, rounds: int) -> dict:
    """Median of per-round medians; the models take turns in every round so drift hits all alike."""
    tmp = Path(tempfile.mkdtemp(prefix="edgeopt-bench-"))
    timers = {}
    for name, model in models.items():
        onnx_path = export_onnx(model, tmp / f"{name}.onnx")
        bundle, _ = compile_onnx(
            onnx_path, target=get_target("host"), out_dir=tmp / name, parity_inputs=data.x_test[:8]
        )
        timers[name] = HostTimer(bundle.path / "model.so", model.spec.shape)
    samples = {name: [] for name in timers}
    for _ in range(rounds):
        for name, t in timers.items():
            samples[name].append(t.median_ms(number=100, repeat=3, min_repeat_ms=30))
    return {name: statistics.median(s) for name, s in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    data = load_digits()
    result: dict = {}

    # 1. the headline: gradual structured pruning with distillation, and its real speed-up
    dense = train_builtin("cnn", data, seed=0)
    cfg = PruneConfig(target=0.70, method=Method.structured, schedule=Schedule.gradual, distill=True)
    pruned = prune(dense, data, config=cfg)
    doc = pruned.to_json()
    lat = latency({"dense": dense, "pruned": pruned.model}, data, args.rounds)
    result["headline"] = {
        "config": cfg.to_json(),
        "accuracy": doc["accuracy"],
        "sparsity": doc["sparsity"]["global"],
        "params": doc["params"],
        "macs": doc["macs"],
        "shapes_after": {layer["name"]: layer["shape_after"] for layer in doc["layers"]},
        "tvm_host_latency_ms": lat,
        "speedup": lat["dense"] / lat["pruned"],
    }
    print(
        f"cnn structured 70%: accuracy {doc['accuracy']['before']:.4f} -> {doc['accuracy']['after']:.4f} "
        f"(drop {100 * doc['accuracy']['drop']:.2f} points), sparsity {doc['sparsity']['global']:.4f}, "
        f"MACs {doc['macs']['before']:,} -> {doc['macs']['after']:,}"
    )
    print(
        f"TVM host latency: dense {lat['dense']:.4f} ms, pruned {lat['pruned']:.4f} ms, "
        f"speed-up {lat['dense'] / lat['pruned']:.2f}x",
        flush=True,
    )

    # 2. allocation and distillation, each at the same (small) fine-tuning budget, over seeds
    def mean_acc(target: float, **kw) -> dict:
        accs, drops = [], []
        for seed in args.seeds:
            base = dense if seed == 0 else train_builtin("cnn", data, seed=seed)
            p = prune(base, data, config=PruneConfig(target=target, method=Method.structured, seed=seed, **kw))
            accs.append(p.accuracy_after)
            drops.append(p.accuracy_before - p.accuracy_after)
        return {"accuracy_mean": statistics.mean(accs), "drop_mean": statistics.mean(drops), "accuracies": accs}

    small = dict(schedule=Schedule.oneshot, final_epochs=2)
    result["allocation"] = {}
    for target in (0.70, 0.85):
        uni = mean_acc(target, scope=Scope.layer, allocation=Allocation.uniform, **small)
        sens = mean_acc(target, scope=Scope.layer, allocation=Allocation.sensitivity, **small)
        result["allocation"][str(target)] = {"uniform": uni, "sensitivity": sens}
        print(
            f"allocation @ {target:.0%} (one-shot, 2 epochs): uniform {uni['accuracy_mean']:.4f}, "
            f"sensitivity {sens['accuracy_mean']:.4f}",
            flush=True,
        )

    gradual_small = dict(schedule=Schedule.gradual, steps=4, epochs_per_step=1, final_epochs=2)
    result["distillation"] = {}
    for target in (0.70, 0.85):
        plain = mean_acc(target, distill=False, **gradual_small)
        kd = mean_acc(target, distill=True, **gradual_small)
        result["distillation"][str(target)] = {"without": plain, "with": kd}
        print(
            f"distillation @ {target:.0%} (gradual, 1+2 epochs): without {plain['accuracy_mean']:.4f}, "
            f"with {kd['accuracy_mean']:.4f}",
            flush=True,
        )

    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
