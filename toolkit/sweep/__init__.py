"""`edgeopt sweep`: search pruning x quantization x target for the accuracy-latency-size Pareto
front, trials on Ray Tune, measured on boards. Ray and Optuna are the optional extra
`edgeopt[sweep]`; nothing here imports them until a sweep runs.

    from edgeopt.toolkit.sweep import resolve, run_sweep
    doc = run_sweep(resolve({"epochs": 3}, {"sparsity": [0.7, 0.8]}), out=Path("sweep-out"))
"""

from .spec import Search, SweepSpec, resolve

__all__ = ["Search", "SweepSpec", "require_ray", "resolve", "run_sweep"]


def __getattr__(name: str):
    # the runner loads on first use: the CLI reads SweepSpec's defaults without it
    if name in ("require_ray", "run_sweep"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
