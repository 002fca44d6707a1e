"""The benchmark protocol and the accuracy/parity check, on the board."""
from __future__ import annotations

import time

import numpy as np


def percentiles(samples_ms: list) -> dict:
    a = np.asarray(samples_ms, dtype=np.float64)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "min": float(a.min()),
        "max": float(a.max()),
        "runs": int(a.size),
    }


def time_calls(fn, *, warmup: int, repeat: int, min_repeat_ms: float, number: int) -> dict:
    """First call timed alone; `warmup` calls discarded; `repeat` repeats, each of at least
    `number` calls and `min_repeat_ms`; every call timed on its own."""
    t0 = time.perf_counter()
    fn()
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        fn()
    samples = []
    per_repeat = []
    for _ in range(repeat):
        start = time.perf_counter()
        calls = 0
        while calls < number or (time.perf_counter() - start) * 1e3 < min_repeat_ms:
            t = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t) * 1e3)
            calls += 1
        per_repeat.append(calls)
    return {"first_ms": first_ms, "samples": samples, "per_repeat": per_repeat}


def bench(bundle, *, warmup: int, repeat: int, min_repeat_ms: float, number: int, keep_samples: bool,
          x: np.ndarray | None = None) -> dict:
    """The protocol on the TVM VM; `x` (batch 1) is the input, random if not given."""
    shape = bundle.input["shape"]
    if x is None:
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
    dx = bundle.to_device(np.ascontiguousarray(x, dtype=np.float32).reshape(shape))
    timed = time_calls(lambda: bundle.fn(dx), warmup=warmup, repeat=repeat, min_repeat_ms=min_repeat_ms, number=number)
    samples = timed["samples"]
    # TVM's own timer (C++ loop, no Python per call) for comparison
    te = bundle.vm.time_evaluator("main", bundle.dev, number=max(1, number), repeat=repeat, min_repeat_ms=int(min_repeat_ms))(dx)
    te_median_ms = float(te.median) * 1e3
    stats = percentiles(samples)
    # time_evaluator reports, per repeat, the mean over the calls of that repeat, and then their
    # median: the same statistic over our per-call samples is what the overhead compares with
    # (a p50 of single calls ignores the slow tail that a mean includes).
    means, i = [], 0
    for n in timed["per_repeat"]:
        means.append(float(np.mean(samples[i:i + n])))
        i += n
    repeat_mean_median_ms = float(np.median(means))
    result = {
        "latency_ms": stats,
        "load_ms": bundle.load_ms,
        "first_inference_ms": timed["first_ms"],
        "warmup": warmup,
        "repeat": repeat,
        "calls_per_repeat": timed["per_repeat"],
        "min_repeat_ms": min_repeat_ms,
        "time_evaluator_median_ms": te_median_ms,
        "repeat_mean_median_ms": repeat_mean_median_ms,
        "python_overhead_ms": repeat_mean_median_ms - te_median_ms,
    }
    if keep_samples:
        result["samples_ms"] = samples
    return result


def parity(outs: np.ndarray, reference: np.ndarray) -> dict:
    diff = np.abs(outs.astype(np.float64) - reference.astype(np.float64))
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_agreement": float((outs.argmax(-1) == reference.argmax(-1)).mean()),
        "samples": int(len(outs)),
    }


def evaluate(bundle, x: np.ndarray, y, reference) -> dict:
    """Accuracy on labelled samples, and agreement with the host's reference outputs if given."""
    outs = np.concatenate([bundle.run(x[i : i + 1]) for i in range(len(x))])
    result = {"samples": int(len(x))}
    if y is not None:
        result["accuracy"] = float((outs.argmax(-1) == y).mean())
    if reference is not None:
        result["parity"] = parity(outs, reference)
    return result, outs
