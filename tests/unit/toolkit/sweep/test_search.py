"""The Optuna search as Tune gets it: three objectives, every dimension, and picklable (Tune saves
the searcher into the experiment state a resumed sweep reads)."""

from __future__ import annotations

import pickle

import pytest

pytest.importorskip("ray.tune", reason="the sweep extra is not installed: pip install -e '.[sweep]'")
pytest.importorskip("optuna", reason="the sweep extra is not installed: pip install -e '.[sweep]'")


def test_optuna_search_is_multi_objective_and_picklable():
    import optuna
    from edgeopt.toolkit.sweep.engine import OBJECTIVES, _tune_config
    from edgeopt.toolkit.sweep.spec import resolve

    spec = resolve({"search": "optuna", "samples": 5}, {"sparsity": [0.7, 0.9], "calibrator": ["minmax", "entropy"]})
    cfg = pickle.loads(pickle.dumps(_tune_config(spec)))
    assert cfg.num_samples == 5
    search = cfg.search_alg
    assert list(search._metric) == list(OBJECTIVES) and list(search._mode) == list(OBJECTIVES.values())
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    trial = study.ask()
    search._space(trial)
    assert trial.params["sparsity"] in (0.7, 0.9) and trial.params["calibrator"] in ("minmax", "entropy")
    assert set(trial.params) == {"method", "sparsity", "bits", "scheme", "calibrator", "target", "tune_trials"}
