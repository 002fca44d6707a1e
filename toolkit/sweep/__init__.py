"""`edgeopt sweep`: search pruning x quantization x target for the accuracy-latency-size Pareto
front, trials on Ray Tune, measured on boards. Ray and Optuna are the optional extra
`edgeopt[sweep]`; nothing here imports them until a sweep runs.

    from edgeopt.toolkit.sweep import resolve, run_sweep
    doc = run_sweep(resolve({"epochs": 3}, {"sparsity": [0.7, 0.8]}), out=Path("sweep-out"))
"""
from .api import require_ray, run_sweep
from .spec import Search, SweepSpec, resolve

__all__ = ["Search", "SweepSpec", "require_ray", "resolve", "run_sweep"]
