"""`bench --plan PLAN`: the agent's one measuring verb. One bundle or several (and each one's
onnxruntime model) timed in one process, interleaved round by round, so that drift on the board
(clock changes, heat, a noisy neighbour) falls on every engine alike instead of on whichever ran
last. `edgeopt bench BUNDLE`, `edgeopt run` and `edgeopt bench DIR` all send a plan.

The plan is a JSON file the host uploads:

    {"engines": ["tvm"] | ["ort"] | ["tvm", "ort"], "warmup": 20, "rounds": 10, "number": 20, "settle": 2,
     "min_round_ms": 0, "time_evaluator": false, "profile_runs": 20, "keep_samples": true,
     "eval": "<npz with x, y>" | null,
     "bundles": [{"name": "dense-fp32", "dir": "<bundle dir>", "reference": "<npz x, ref>" | null,
                   "onnx": "original.onnx" (optional: the file onnxruntime runs; default model.onnx)}, ...]}

Per engine (a bundle under the TVM VM, or its model.onnx under onnxruntime): load time, then the
agent's one protocol (measure.run_protocol): first inference, `warmup` calls discarded, `rounds`
rounds in each of which every engine runs `settle` untimed calls and then at least `number` calls
and `min_round_ms`, each call timed alone, the engine order rotated by one every round. The host
runs the TVM engines and the onnxruntime ones in two processes, one after the other:
onnxruntime's spinning thread pool, left running after its calls, costs TVM's pool milliseconds
on a small board when both live in one process. Then, outside the timed part: TVM's own timer
(`time_evaluator`, if asked), parity against the host's reference outputs, accuracy on the
labelled set, and a per-operator profile through the VM's instrument hook."""

from __future__ import annotations

import json
import time

import numpy as np

from .baseline import ONNX, ort_session
from .bundle import AgentFailure, LoadedBundle
from .measure import Engine, parity, percentiles, run_protocol


def _load_npz(path: str) -> dict:
    try:
        data = np.load(path, allow_pickle=False)
        return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise AgentFailure("data", f"cannot read {path}: {exc}") from None


def profile_ops(bundle: LoadedBundle, dx, runs: int) -> dict:
    """Per-operator times from the Relax VM's instrument hook (called before and after every
    Call instruction): the wall time between the two calls, per function symbol. TVM 0.27's
    runtime has no VM profiler of its own (no `profile=True`, no runtime.profiling)."""
    if not hasattr(bundle.vm, "set_instrument"):
        return {"available": False, "reason": "this TVM runtime's VirtualMachine has no set_instrument hook"}
    stack: list = []
    stats: dict = {}

    def instrument(func, symbol, before_run, ret_value, *args):
        now = time.perf_counter()
        if before_run:
            stack.append(now)
        elif stack:
            s = stats.setdefault(str(symbol), [0, 0.0])
            s[0] += 1
            s[1] += now - stack.pop()
        return 0  # VMInstrumentReturnKind.NO_OP

    bundle.fn(dx)  # warm
    try:
        bundle.vm.set_instrument(instrument)
    except Exception as exc:  # noqa: BLE001  (an older or newer runtime: say so, do not fail)
        return {"available": False, "reason": f"VirtualMachine.set_instrument failed: {type(exc).__name__}: {exc}"}
    t0 = time.perf_counter()
    for _ in range(runs):
        bundle.fn(dx)
    wall_ms = (time.perf_counter() - t0) * 1e3 / runs
    if not stats:  # compiled VM code calls its kernels directly: no hook fires
        return _profile_from_plan(bundle, runs, wall_ms)
    total = sum(v[1] for v in stats.values()) * 1e3 / runs
    ops = [
        {
            "name": k,
            "kind": "builtin" if k.startswith("vm.builtin.") else "kernel",
            "calls_per_inference": v[0] / runs,
            "ms_per_inference": v[1] * 1e3 / runs,
            "percent": (100.0 * v[1] * 1e3 / runs / total) if total > 0 else 0.0,
        }
        for k, v in stats.items()
    ]
    ops.sort(key=lambda o: -o["ms_per_inference"])
    return {
        "available": True,
        "method": "relax VirtualMachine.set_instrument (before/after every Call)",
        "runs": runs,
        "instrumented_ms_per_inference": wall_ms,
        "ops_ms_per_inference": total,
        "ops": ops,
    }


def _random(shape, dtype: str, rng):
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -128), min(info.max, 255) + 1, size=shape).astype(dtype)
    return rng.random(shape).astype(dtype)


def _profile_from_plan(bundle: LoadedBundle, runs: int, wall_ms: float) -> dict:
    """Each kernel of the manifest's call plan timed alone (the runtime's own timer, `runs` calls)
    on arguments of its shapes; what the whole inference takes beyond them is the VM's own work
    (allocation, calls)."""
    plan = (bundle.manifest.get("vm") or {}).get("kernels")
    if not plan:
        return {"available": False, "reason": "compiled VM code has no per-call hook and the bundle has no call plan"}
    rng = np.random.default_rng(0)
    stats: dict = {}
    for entry in plan:
        args = [bundle.to_device(_random(a["shape"], a["dtype"], rng)) for a in entry["args"]]
        timer = None
        for mod in (bundle.lib, *bundle.lib.imports):
            try:
                timer = mod.time_evaluator(entry["name"], bundle.dev, number=max(runs, 1), repeat=3)
                break
            except Exception:  # noqa: BLE001  (not in this module: try the next)
                continue
        if timer is None:
            return {"available": False, "reason": f"kernel {entry['name']} of the call plan is not in the library"}
        s = stats.setdefault(entry["name"], [0, 0.0])
        s[0] += 1
        s[1] += sorted(timer(*args).results)[1] * 1e3
    kernels = sum(v[1] for v in stats.values())
    ops = [
        {"name": k, "kind": "kernel", "calls_per_inference": v[0], "ms_per_inference": v[1]} for k, v in stats.items()
    ]
    ops.append(
        {
            "name": "vm (allocation, calls)",
            "kind": "builtin",
            "calls_per_inference": 1,
            "ms_per_inference": max(wall_ms - kernels, 0.0),
        }
    )
    total = sum(o["ms_per_inference"] for o in ops)
    for o in ops:
        o["percent"] = 100.0 * o["ms_per_inference"] / total if total > 0 else 0.0
    ops.sort(key=lambda o: -o["ms_per_inference"])
    return {
        "available": True,
        "method": "each kernel of the bundle's call plan timed alone (compiled VM code)",
        "runs": runs,
        "instrumented_ms_per_inference": wall_ms,
        "ops_ms_per_inference": total,
        "ops": ops,
    }


def time_evaluator(bundle: LoadedBundle, dx, engine: Engine, *, rounds: int, number: int, min_round_ms: float) -> dict:
    """TVM's own timer (a C++ loop, no Python per call) beside the protocol's per-call samples:
    time_evaluator reports per repeat the mean over its calls, then their median; the same statistic
    over the per-call samples is what the Python overhead compares with (a p50 of single calls
    ignores the slow tail that a mean includes)."""
    te = bundle.vm.time_evaluator(
        "main", bundle.dev, number=max(1, number), repeat=rounds, min_repeat_ms=int(min_round_ms)
    )(dx)
    te_ms = float(te.median) * 1e3
    means, i = [], 0
    for n in engine.per_round:
        means.append(float(np.mean(engine.samples[i : i + n])))
        i += n
    repeat_mean_median_ms = float(np.median(means))
    return {
        "time_evaluator_median_ms": te_ms,
        "repeat_mean_median_ms": repeat_mean_median_ms,
        "python_overhead_ms": repeat_mean_median_ms - te_ms,
    }


# what a plan may leave out: the host names every key; these serve a hand-written plan (warm-up,
# rounds and calls as `edgeopt bench`'s defaults, a test ties them; no settling, no profile)
DEFAULTS = {
    "engines": ["tvm"],
    "warmup": 20,
    "rounds": 10,
    "number": 20,
    "settle": 0,
    "min_round_ms": 0.0,
    "time_evaluator": False,
    "profile_runs": 0,
    "keep_samples": True,
    "eval": None,
}
COUNTS = {"warmup": 0, "rounds": 1, "number": 1, "settle": 0, "profile_runs": 0}  # key: its minimum


def read_plan(plan_path: str) -> dict:
    """The plan with its defaults filled in, or one `data` failure naming what is wrong, before
    anything is loaded or timed."""
    try:
        with open(plan_path) as f:
            given = json.load(f)
    except (OSError, ValueError) as exc:
        raise AgentFailure("data", f"cannot read the plan {plan_path}: {exc}") from None

    def bad(what: str):
        return AgentFailure("data", f"the plan {plan_path} {what}")

    if not isinstance(given, dict):
        raise bad(f"is a JSON {type(given).__name__}, not an object")
    unknown = sorted(set(given) - set(DEFAULTS) - {"bundles"})
    if unknown:
        raise bad(f"has unknown keys {unknown}; known: {sorted([*DEFAULTS, 'bundles'])}")
    plan = {**DEFAULTS, **given}
    for key, least in COUNTS.items():
        value = plan[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise bad(f"has {key}={value!r}: a whole number >= {least} is needed")
    if not isinstance(plan["min_round_ms"], (int, float)) or plan["min_round_ms"] < 0:
        raise bad(f"has min_round_ms={plan['min_round_ms']!r}: a number >= 0 is needed")
    engines = plan["engines"]
    if not isinstance(engines, list) or not engines or not set(engines) <= {"tvm", "ort"}:
        raise bad(f"has engines={engines!r}: a non-empty list of 'tvm' and 'ort' is needed")
    bundles = given.get("bundles")
    if not isinstance(bundles, list) or not bundles:
        raise bad('has no bundles: a non-empty list of {"name", "dir"} objects is needed')
    for i, item in enumerate(bundles):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("name", "dir")):
            raise bad(f'has bundles[{i}]={item!r}: each needs a "name" and a "dir" (strings)')
    return plan


def run_plan(plan_path: str, threads: int) -> dict:
    plan = read_plan(plan_path)
    warmup, rounds, number, settle = (plan[k] for k in ("warmup", "rounds", "number", "settle"))
    min_round_ms = float(plan["min_round_ms"])
    wanted = plan["engines"]
    keep = bool(plan["keep_samples"])
    labelled = _load_npz(plan["eval"]) if plan.get("eval") else None
    variants = []
    engines: list[Engine] = []
    for item in plan["bundles"]:
        bundle = LoadedBundle(item["dir"])
        ref = _load_npz(item["reference"]) if item.get("reference") else None
        shape = bundle.input["shape"]
        if ref is not None:
            x1 = np.ascontiguousarray(ref["x"][:1], dtype=np.float32).reshape(shape)
        else:
            x1 = np.random.default_rng(0).random(shape, dtype=np.float32)
        dx = bundle.to_device(x1)
        tvm_engine = Engine(item["name"], "tvm", (lambda b=bundle, d=dx: b.fn(d)), bundle.load_ms)
        if "tvm" in wanted:
            engines.append(tvm_engine)
        v = {
            "name": item["name"],
            "bundle": bundle,
            "dx": dx,
            "x1": x1,
            "ref": ref,
            "tvm": tvm_engine,
            "ort": None,
            "ort_reason": None,
            "session": None,
            "onnx": item.get("onnx", ONNX),
        }
        if "ort" in wanted:
            t0 = time.perf_counter()
            # a plan item's "onnx" (e.g. original.onnx: the user's starting point) overrides model.onnx
            sess, why = ort_session(bundle, threads, v["onnx"])
            if sess is None:
                v["ort_reason"] = why
            else:
                in_name = sess.get_inputs()[0].name
                v["session"], v["in_name"] = sess, in_name
                v["ort"] = Engine(
                    item["name"],
                    "onnxruntime",
                    (lambda s=sess, n=in_name, x=x1: s.run(None, {n: x})),
                    (time.perf_counter() - t0) * 1e3,
                )
                engines.append(v["ort"])
        variants.append(v)

    timed_s = run_protocol(
        engines, warmup=warmup, rounds=rounds, number=number, settle=settle, min_round_ms=min_round_ms
    )

    def engine_doc(e: Engine) -> dict:
        d = {
            "latency_ms": percentiles(e.samples),
            "load_ms": e.load_ms,
            "first_ms": e.first_ms,
            "round_medians_ms": e.round_medians,
            "calls_per_round": e.per_round,
        }
        if keep:
            d["samples_ms"] = e.samples
        return d

    out = []
    for v in variants:
        bundle = v["bundle"]
        doc = {
            "name": v["name"],
            "bundle": {
                "path": bundle.dir,
                "target": bundle.manifest.get("target", {}).get("name"),
                "library_sha256": bundle.sha256["model.so"],
            },
        }
        if "tvm" in wanted:
            doc["tvm"] = engine_doc(v["tvm"])
            if plan.get("time_evaluator"):
                doc["tvm"].update(
                    time_evaluator(bundle, v["dx"], v["tvm"], rounds=rounds, number=number, min_round_ms=min_round_ms)
                )
        if "tvm" in wanted and v["ref"] is not None and "ref" in v["ref"]:
            outs = np.concatenate([bundle.run(xi[None].reshape(bundle.input["shape"])) for xi in v["ref"]["x"]])
            doc["parity"] = parity(outs, v["ref"]["ref"])
        if "tvm" in wanted and labelled is not None:
            xs = labelled["x"].astype(np.float32)
            pred = np.concatenate([bundle.run(xi[None].reshape(bundle.input["shape"])) for xi in xs]).argmax(-1)
            doc["tvm"]["accuracy"] = float((pred == labelled["y"]).mean())
            doc["tvm"]["accuracy_samples"] = int(len(xs))
        if v["ort"] is not None:
            import onnxruntime

            doc["ort"] = dict(
                engine_doc(v["ort"]),
                available=True,
                engine="onnxruntime",
                version=onnxruntime.__version__,
                threads=threads,
                onnx=v["onnx"],
            )
            sess, name, shape = v["session"], v["in_name"], bundle.input["shape"]
            if (
                v["ref"] is not None and "ref" in v["ref"] and v["onnx"] == ONNX
            ):  # an original model's outputs are not the bundle's
                outs = np.concatenate([sess.run(None, {name: xi[None].reshape(shape)})[0] for xi in v["ref"]["x"]])
                doc["ort"]["parity"] = parity(outs, v["ref"]["ref"])
            if labelled is not None:
                xs = labelled["x"].astype(np.float32)
                pred = np.concatenate([sess.run(None, {name: xi[None].reshape(shape)})[0] for xi in xs]).argmax(-1)
                doc["ort"]["accuracy"] = float((pred == labelled["y"]).mean())
        elif "ort" in wanted:
            doc["ort"] = {"available": False, "reason": v["ort_reason"]}
        if "tvm" in wanted:
            if plan["profile_runs"] > 0:
                doc["profile"] = profile_ops(bundle, v["dx"], plan["profile_runs"])
            else:
                doc["profile"] = {"available": False, "reason": "not requested (--profile-runs 0)"}
        out.append(doc)
    return {
        "variants": out,
        "protocol": {
            "engines": wanted,
            "warmup": warmup,
            "rounds": rounds,
            "calls_per_round": number,
            "min_round_ms": min_round_ms,
            "settle_calls_per_round": settle,
            "order": "round-robin, rotated by one engine each round",
            "timed_s": timed_s,
        },
    }
