"""The CPU part of a trial: data -> train -> prune -> quantize -> compile, each stage through the
content-hash keyed StageCache, so two settings that share a prefix (the same pruning for two
quantizations, the same quantization for two targets) compute it once. The original model's own
bundle (dense fp32, for the speedup) is one more shared stage."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import StageCache, stage_key
from .spec import SweepSpec

PARITY_SAMPLES = 32


@dataclass(frozen=True)
class Prepared:
    """What the board measurement needs, and the host-side numbers of a setting."""

    bundle: Path  # the setting's bundle
    original: Path  # the dense fp32 bundle of the same target (the user's starting point)
    eval_npz: Path  # test split (x, y) for accuracy on the board
    val_accuracy: float  # the setting's quantized model, validation split, host (onnxruntime)
    test_accuracy: float  # the same model, test split
    dense_val_accuracy: float
    dense_test_accuracy: float
    sparsity: float
    bytes: int  # the deployable bundle: the compiled library + manifest, not the baseline's model.onnx copy
    quant_path: str
    keys: dict


def _data_hash(data: str) -> str:
    if data == "digits":
        return "digits"
    return hashlib.sha256(Path(data).read_bytes()).hexdigest()


def _deploy_bytes(bundle) -> int:
    return (
        sum(f["bytes"] for name, f in bundle.files.items() if name != "model.onnx")
        + (bundle.path / "manifest.json").stat().st_size
    )


def prepare(setting: dict, spec: SweepSpec, cache: StageCache) -> Prepared:
    from edgeopt.compile import Bundle, compile_onnx, get_target

    from ..data import load_dataset
    from ..export import export_onnx
    from ..inputs import train_builtin
    from ..models import Model
    from ..onnx_run import predict
    from ..prune import Method, PruneConfig, PrunedModel, Schedule, prune
    from ..quantize import Calibrator, QuantConfig, QuantizedModel, quantize
    from ..quantize.config import Scheme
    from ..train import accuracy, evaluate

    data = load_dataset(spec.data)
    data_key = stage_key("data", data=_data_hash(spec.data))

    def build_data(d: Path) -> None:
        np.savez(d / "test.npz", x=data.x_test, y=data.y_test)

    data_dir = cache.get("data", data_key, build_data)

    train_key = stage_key("train", parent=data_key, model=spec.model, epochs=spec.epochs, lr=spec.lr, seed=spec.seed)

    def build_train(d: Path) -> None:
        model = train_builtin(spec.model, data, epochs=spec.epochs, lr=spec.lr, seed=spec.seed)
        model.save(d)
        export_onnx(model, d / "model.onnx")
        (d / "train.json").write_text(
            json.dumps(
                {"val_accuracy": evaluate(model.module, data.x_val, data.y_val), "test_accuracy": model.accuracy}
            )
        )

    train_dir = cache.get("train", train_key, build_train)
    dense_meta = json.loads((train_dir / "train.json").read_text())
    dense = Model.load(train_dir)
    target = get_target(setting["target"])
    preprocessing = {
        "layout": dense.spec.layout,
        "scale": dense.spec.scale,
        "mean": 0.0,
        "std": 1.0,
        "range": [0.0, 1.0],
        "declared": True,
    }
    parity_x = data.x_test[:PARITY_SAMPLES]

    original_key = stage_key("original", parent=train_key, target=target.name)

    def build_original(d: Path) -> None:
        compile_onnx(
            train_dir / "model.onnx",
            target=target,
            out_dir=d / "bundle",
            parity_inputs=parity_x,
            onnx_copy=True,
            preprocessing=preprocessing,
            extra_manifest={"variant": {"name": "original", "precision": "fp32", "pruned": False}},
        )

    original_dir = cache.get("original", original_key, build_original)

    prune_cfg = PruneConfig(
        target=setting["sparsity"],
        method=Method(setting["method"]),
        schedule=Schedule(spec.schedule),
        steps=spec.prune_steps,
        epochs_per_step=spec.prune_epochs,
        final_epochs=spec.final_epochs,
        seed=spec.seed,
    )
    prune_key = stage_key("prune", parent=train_key, config=prune_cfg.to_json())

    def build_prune(d: Path) -> None:
        prune(dense, data, config=prune_cfg).save(d)

    prune_dir = cache.get("prune", prune_key, build_prune)
    pruned = PrunedModel.load(prune_dir)

    # the setting's calibrator is what is measured: the controller's fallback chain (other
    # calibrators, float layers, QAT) would turn every setting into the same one
    quant_cfg = QuantConfig(
        bits=setting["bits"],
        scheme=Scheme(setting["scheme"]),
        calibrator=Calibrator(setting["calibrator"]),
        calibration_samples=spec.calibration_samples,
        budget=0.999,
        qat=False,
        seed=spec.seed,
    )
    quant_key = stage_key("quantize", parent=prune_key, config=quant_cfg.to_json())

    def build_quant(d: Path) -> None:
        q = quantize(pruned.model, data, config=quant_cfg, out_dir=d)
        (d / "sweep.json").write_text(json.dumps({"val_accuracy": accuracy(predict(q.path, data.x_val), data.y_val)}))

    quant_dir = cache.get("quantize", quant_key, build_quant)
    quant = QuantizedModel.load(quant_dir)
    quant_val = json.loads((quant_dir / "sweep.json").read_text())["val_accuracy"]

    compile_key = stage_key("compile", parent=quant_key, target=target.name, tune_trials=setting["tune_trials"])

    def build_compile(d: Path) -> None:
        compile_onnx(
            quant.path,
            target=target,
            out_dir=d / "bundle",
            parity_inputs=parity_x,
            onnx_copy=True,
            preprocessing=preprocessing,
            tune_trials=setting["tune_trials"],
            extra_manifest={
                "variant": {
                    "name": "setting",
                    "precision": f"{setting['scheme']}-{setting['bits']}bit",
                    "pruned": True,
                    "accuracy": quant.accuracy_quantized,
                },
                "sweep_setting": setting,
            },
        )

    compile_dir = cache.get("compile", compile_key, build_compile)
    bundle = Bundle.load(compile_dir / "bundle")
    return Prepared(
        bundle=bundle.path,
        original=original_dir / "bundle",
        eval_npz=data_dir / "test.npz",
        val_accuracy=quant_val,
        test_accuracy=quant.accuracy_quantized,
        dense_val_accuracy=dense_meta["val_accuracy"],
        dense_test_accuracy=dense_meta["test_accuracy"],
        sparsity=pruned.global_sparsity,
        bytes=_deploy_bytes(bundle),
        quant_path=quant.quant_path,
        keys={
            "data": data_key,
            "train": train_key,
            "prune": prune_key,
            "quantize": quant_key,
            "compile": compile_key,
            "original": original_key,
        },
    )
