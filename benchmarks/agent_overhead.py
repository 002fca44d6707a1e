"""What the board agent's latency means: for the built-in MLP on the local board, the agent's
per-call p50 (Python loop, one `perf_counter` pair per call), TVM's own `time_evaluator` median
(a C++ loop over the same VM function and input) and the difference — the per-call overhead of
calling the VM from Python — side by side, per thread count.

    python benchmarks/agent_overhead.py [--bundle DIR] [--rounds 5] [--runs 1000] [--out results.json]

Without --bundle it trains the built-in MLP briefly (fp32) and compiles it for the host. Each
round runs `edgeopt bench` once per thread count through the real SSH path, the thread counts
taking turns so that drift hits them alike; the table shows medians over rounds. A benchmark, not
a test: it prints what it measured here and now, and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeopt.compile import Bundle, compile_onnx, get_target  # noqa: E402
from edgeopt.toolkit.boards.deploy import Connection  # noqa: E402
from edgeopt.toolkit.boards.names import open_board  # noqa: E402
from edgeopt.toolkit.boards.ops import bench  # noqa: E402


def build_mlp(tmp: Path) -> Bundle:
    from edgeopt.toolkit.data import load_digits
    from edgeopt.toolkit.export import export_onnx
    from edgeopt.toolkit.inputs import train_builtin

    data = load_digits()
    model = train_builtin("mlp", data, epochs=5, seed=0)
    onnx = export_onnx(model, tmp / "mlp.onnx")
    return compile_onnx(
        onnx, target=get_target("host"), out_dir=tmp / "bundle", onnx_copy=True, parity_inputs=data.x_test[:8]
    )[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="an existing bundle [default: the built-in MLP, fp32]")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edgeopt-overhead-"))
    bundle = Bundle.load(args.bundle) if args.bundle else build_mlp(tmp)
    threads = [int(t) for t in args.threads.split(",")]
    rows: dict[int, list[dict]] = {t: [] for t in threads}
    with open_board("local") as spec, Connection(spec) as conn:
        for r in range(args.rounds):
            order = threads if r % 2 == 0 else list(reversed(threads))
            for t in order:
                doc = bench(conn, bundle, runs=args.runs, warmup=args.warmup, threads=[t])
                rows[t].append(
                    {
                        "p50": doc["latency_ms"]["p50"],
                        "p90": doc["latency_ms"]["p90"],
                        "mean": doc["latency_ms"]["mean"],
                        "repeat_mean": doc["repeat_mean_median_ms"],
                        "te": doc["time_evaluator_median_ms"],
                        "overhead": doc["python_overhead_ms"],
                        "runs": doc["latency_ms"]["runs"],
                        "first": doc["first_ms"],
                        "load": doc["load_ms"],
                    }
                )
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    med = {t: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for t, rs in rows.items()}
    board = doc["board"]
    result = {
        "machine": {
            "cpu": board["cpu"],
            "cores": board["cores"],
            "arch": board["arch"],
            "python": board["python"],
            "tvm": board.get("tvm"),
            "host": platform.node(),
        },
        "bundle": {"id": bundle.id, "target": bundle.manifest["target"]["name"]},
        "protocol": {"rounds": args.rounds, "runs": args.runs, "warmup": args.warmup},
        "medians": {str(t): m for t, m in med.items()},
        "rounds": {str(t): rs for t, rs in rows.items()},
    }
    print(
        "| threads | agent p50 (ms) | agent repeat-mean median (ms) | time_evaluator median (ms) | per-call "
        "overhead (ms) | overhead / time_evaluator | agent p90 (ms) | runs x rounds |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t, m in med.items():
        print(
            f"| {t} | {m['p50']:.4f} | {m['repeat_mean']:.4f} | {m['te']:.4f} | {m['overhead']:+.4f} | "
            f"{m['overhead'] / m['te']:+.1%} | {m['p90']:.4f} | {int(m['runs'])} x {args.rounds} |"
        )
    print(
        f"\nload {statistics.median(x['load'] for rs in rows.values() for x in rs):.2f} ms, first inference "
        f"{statistics.median(x['first'] for rs in rows.values() for x in rs):.3f} ms (medians); "
        f"{board['cpu']}, {board['cores']} cores"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
