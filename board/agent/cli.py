"""`python3 -m board.agent <verb> ...`: exactly one JSON document on stdout, logs on stderr.

Exit codes: 0 ok; 1 the agent ran and reports a failure (see `error.kind`); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from . import AGENT_VERSION, SCHEMA, guard
from .bundle import cpu_flags
from .version import agent_digest


def board_info(*, runtime: bool = True) -> dict:
    info = {
        "arch": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "cpu_features": sorted(cpu_flags()),
        "memory_mb": _mem_total_mb(),
        "executable": sys.executable,
    }
    if not runtime:  # `version`: no numpy, no TVM, fast
        return info
    try:
        import tvm

        info["tvm"] = tvm.__version__
    except Exception as exc:  # the board may lack the runtime: say so instead of failing
        info["tvm"] = None
        info["tvm_error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError as exc:
        info["numpy"] = None
        info["numpy_error"] = str(exc)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":")[0].strip().lower()
                if key in ("model name", "cpu model", "hardware", "processor") and ":" in line:
                    value = line.split(":", 1)[1].strip()
                    if value and not value.isdigit():
                        return value
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_mb():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="board.agent", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("info", help="board facts")
    sub.add_parser("version", help="the agent's version and digest (imports neither numpy nor TVM)")
    b = sub.add_parser("bench", help="time one bundle or several (and their onnxruntime models), interleaved")
    b.add_argument("--plan", required=True, help="JSON plan (board/agent/plan.py)")
    e = sub.add_parser("eval", help="accuracy and parity on an uploaded .npz (x, y, ref)")
    e.add_argument("--bundle", required=True)
    e.add_argument("--data", required=True)
    i = sub.add_parser("infer", help="run inputs from an .npz (x), write outputs to an .npz (y)")
    i.add_argument("--bundle", required=True)
    i.add_argument("--input", required=True)
    i.add_argument("--output", required=True)
    for s in (b, e, i):
        s.add_argument("--threads", type=int, default=None, help="TVM_NUM_THREADS")
    return p


def _run(args) -> dict:
    import numpy as np

    from .bundle import LoadedBundle

    if args.verb in ("info", "version"):
        return {}
    if args.verb == "bench":
        from .plan import run_plan

        return run_plan(args.plan, int(os.environ["TVM_NUM_THREADS"]))
    bundle = LoadedBundle(args.bundle)
    result = {
        "bundle": {
            "path": args.bundle,
            "target": bundle.manifest.get("target", {}).get("name"),
            "library_sha256": bundle.sha256["model.so"],
        }
    }
    if args.verb == "eval":
        from .measure import evaluate

        data = _load_npz(args.data)
        x = data["x"].astype(np.float32)
        y = data["y"] if "y" in data.files else None
        ref = data["ref"] if "ref" in data.files else None
        result.update(evaluate(bundle, x, y, ref)[0])
    elif args.verb == "infer":
        from .measure import evaluate

        x = np.load(args.input, allow_pickle=False)["x"].astype(np.float32)
        summary, outs = evaluate(bundle, x, None, None)
        np.savez(args.output, y=outs)
        result.update(summary, output=args.output)
    return result


def _load_npz(path: str):
    import numpy as np

    from .bundle import AgentFailure

    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise AgentFailure("data", f"cannot read {path}: {exc}") from None
    if "x" not in data.files:
        raise AgentFailure("data", f"{path} has no array 'x'")
    return data


def main(argv: list) -> int:
    # Anything else that writes to fd 1 (a C++ log, a stray print) goes to stderr instead, so
    # stdout carries exactly one JSON document.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    args = _parser().parse_args(argv)
    # pinned always (TVM's own default depends on how it counts cores); read at pool start
    os.environ["TVM_NUM_THREADS"] = str(getattr(args, "threads", None) or os.cpu_count() or 1)
    os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")
    guard.install()
    t0 = time.perf_counter()
    doc = {
        "schema": SCHEMA,
        "agent_version": AGENT_VERSION,
        "agent_digest": agent_digest(),
        "verb": args.verb,
        "ok": True,
    }
    code = 0
    try:
        doc.update(_run(args))
    except Exception as exc:
        from .bundle import AgentFailure

        kind = exc.kind if isinstance(exc, AgentFailure) else type(exc).__name__
        doc.update(ok=False, error={"kind": kind, "message": str(exc).splitlines()[0] if str(exc) else kind})
        code = 1
    doc["board"] = board_info(runtime=args.verb != "version")
    doc["threads"] = int(os.environ["TVM_NUM_THREADS"])
    doc["peak_rss_mb"] = _peak_rss_mb()
    doc["elapsed_ms"] = (time.perf_counter() - t0) * 1e3
    doc["imports"] = guard.imported_top_level()
    doc["agent_digest"] = agent_digest()  # again, now that everything is imported
    doc["blocked_imports"] = sorted(set(guard.BLOCKER.attempts))
    json.dump(doc, out)
    out.write("\n")
    out.flush()
    return code
