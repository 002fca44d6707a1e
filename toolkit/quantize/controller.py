"""Spend an accuracy budget: PTQ with the default calibrator -> the other calibrators ->
per-layer fallback (the most sensitive layers stay float) -> QAT. Every step is scored on the
quantized ONNX run by onnxruntime; decisions use the validation split (never trained on), and
the test split is what gets reported."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from edgeopt.errors import InputError

from ..data import Dataset
from ..export import export_onnx
from ..models import Model
from ..onnx_run import predict
from ..train import accuracy
from . import kmeans, ort_ptq
from .artifact import QuantizedModel, filename_for
from .config import Calibrator, QuantConfig, Scheme
from .qat import float_finetune, qat

EPS = 1e-9


def quantize(
    source: Model | Path,
    data: Dataset,
    *,
    config: QuantConfig,
    out_dir: Path,
    on_step: Callable[[dict], None] | None = None,
    sparsity: dict | None = None,
) -> QuantizedModel:
    """`source` is a torch Model (all steps, QAT included) or an ONNX file (PTQ steps only).
    Writes the float ONNX (model.onnx), the chosen quantized model and quant.json to `out_dir`.
    `sparsity`: the pruning stage's, carried in quant.json on to the bundle's manifest."""
    config.validate()
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / "model.onnx"
    if isinstance(source, Model):
        export_onnx(source, fp32)
        input_name = source.spec.name
    else:
        if not Path(source).is_file():
            raise InputError(f"ONNX model not found: {source}")
        if Path(source).resolve() != fp32.resolve():
            shutil.copyfile(source, fp32)
        from ..onnx_run import session

        input_name = session(fp32).get_inputs()[0].name
    x_val, y_val = data.x_val, data.y_val
    calib = data.calibration(config.calibration_samples, seed=config.seed)
    if not data.labelled:
        return _calibrate_only(
            fp32, data, config=config, out_dir=out_dir, input_name=input_name, calib=calib, sparsity=sparsity
        )

    with tempfile.TemporaryDirectory(prefix="edgeopt-quant-") as tmp:
        work = Path(tmp)
        pre = ort_ptq.preprocess(fp32, work / "pre.onnx")
        float_val = accuracy(predict(pre, x_val), y_val)
        float_test = accuracy(predict(pre, data.x_test), data.y_test)
        budget = config.budget_for(float_val)
        steps: list[dict] = []
        candidates: list[tuple[dict, Path, dict]] = []  # (step, file, choice)

        def attempt(name: str, path: Path, choice: dict, **info) -> dict:
            val = accuracy(predict(path, x_val), y_val)
            step = {
                "name": name,
                "accuracy": accuracy(predict(path, data.x_test), data.y_test),
                "val_accuracy": val,
                "val_drop": float_val - val,
                "within_budget": float_val - val <= budget + EPS,
                **info,
            }
            steps.append(step)
            candidates.append((step, path, choice))
            if on_step:
                on_step(step)
            return step

        def over(step: dict) -> str:
            return f"validation drop {step['val_drop']:.4f} > budget {budget:.4f}"

        chosen = None
        if config.scheme is Scheme.kmeans:
            path, info = kmeans.share_weights(pre, work / "kmeans.onnx", bits=config.bits, seed=config.seed)
            chosen = attempt(
                f"kmeans:{config.bits}bit", path, {"path": "kmeans", "calibrator": config.calibrator}, **info
            )
        else:
            ptq = lambda cal, exclude=(): ort_ptq.quantize(  # noqa: E731
                pre,
                work / f"ptq_{cal.value}_{len(exclude)}.onnx",
                input_name=input_name,
                calib=calib,
                calibrator=cal,
                bits=config.bits,
                percentile=config.percentile,
                exclude=tuple(exclude),
                per_channel=config.per_channel,
            )
            order = [config.calibrator] + [c for c in Calibrator if c is not config.calibrator]
            best_cal, best_val = config.calibrator, -1.0
            for cal in order:
                step = attempt(f"ptq:{cal.value}", ptq(cal), {"path": "ptq", "calibrator": cal})
                if step["val_accuracy"] > best_val:
                    best_cal, best_val = cal, step["val_accuracy"]
                if step["within_budget"]:
                    chosen = step
                    break
                step["next"] = (
                    f"{over(step)}: try another calibrator"
                    if cal is not order[-1]
                    else f"{over(step)}: keep the most sensitive layers in float"
                )

            if chosen is None:
                nodes = ort_ptq.quantizable_nodes(pre)
                # sensitivity: each layer quantized alone, the rest float
                sensitivity = []
                for node in nodes:
                    path = ptq(best_cal, [n for n in nodes if n != node])
                    sensitivity.append({"layer": node, "val_drop": float_val - accuracy(predict(path, x_val), y_val)})
                sensitivity.sort(key=lambda s: s["val_drop"], reverse=True)
                max_float = min(len(nodes) - 1, math.ceil(config.fallback_max_fraction * len(nodes)))
                for k in range(1, max_float + 1):
                    keep = [s["layer"] for s in sensitivity[:k]]
                    step = attempt(
                        f"ptq+fallback:{k}",
                        ptq(best_cal, keep),
                        {"path": "ptq+fallback", "calibrator": best_cal, "float_layers": keep},
                        float_layers=keep,
                        **({"sensitivity": sensitivity} if k == 1 else {}),
                    )
                    if step["within_budget"]:
                        chosen = step
                        break
                    step["next"] = over(step) + (": keep one more layer in float" if k < max_float else ": QAT")

            if chosen is None and config.qat:
                if isinstance(source, Model):
                    trained = qat(
                        source.module,
                        data.x_train,
                        data.y_train,
                        calib,
                        bits=config.bits,
                        calibrator=best_cal,
                        percentile=config.percentile,
                        epochs=config.qat_epochs,
                        lr=config.qat_lr,
                        seed=config.seed,
                        per_channel=config.per_channel,
                    )
                    q_path = _export_and_ptq(trained, source, work / "qat", input_name, calib, best_cal, config)
                    control = float_finetune(
                        source.module,
                        data.x_train,
                        data.y_train,
                        epochs=config.qat_epochs,
                        lr=config.qat_lr,
                        seed=config.seed,
                    )
                    c_path = _export_and_ptq(control, source, work / "control", input_name, calib, best_cal, config)
                    control_info = {
                        "name": f"float fine-tune ({config.qat_epochs} epochs) + ptq:{best_cal.value}",
                        "accuracy": accuracy(predict(c_path, data.x_test), data.y_test),
                        "val_accuracy": accuracy(predict(c_path, x_val), y_val),
                    }
                    step = attempt(
                        "qat",
                        q_path,
                        {"path": "qat", "calibrator": best_cal},
                        epochs=config.qat_epochs,
                        control=control_info,
                    )
                    chosen = step if step["within_budget"] else None
                else:
                    steps.append({"name": "qat", "skipped": "QAT needs the torch model; an ONNX input allows PTQ only"})

        within = chosen is not None
        if chosen is None:  # nothing met the budget: keep the best attempt, and say so
            chosen = max(candidates, key=lambda c: c[0]["val_accuracy"])[0]
        step, path, choice = next(c for c in candidates if c[0] is chosen)
        final = out_dir / filename_for(config)
        shutil.copyfile(path, final)

    result = QuantizedModel(
        path=final,
        accuracy_float=float_test,
        accuracy_quantized=step["accuracy"],
        config=config,
        steps=steps,
        quant_path=choice["path"],
        calibrator=choice["calibrator"],
        float_layers=choice.get("float_layers", []),
        within_budget=within,
        validation={"float_accuracy": float_val, "budget": budget, "samples": int(len(y_val))},
        measured_on=data.splits.get("test"),
        sparsity=sparsity,
    )
    result.save(out_dir)
    return result


UNLABELLED = "the data has no labels: calibrated on it, no accuracy measured or claimed"


def _calibrate_only(
    fp32: Path,
    data: Dataset,
    *,
    config: QuantConfig,
    out_dir: Path,
    input_name: str,
    calib,
    sparsity: dict | None = None,
) -> QuantizedModel:
    """Unlabelled calibration data: one PTQ pass with the chosen calibrator, nothing scored."""
    with tempfile.TemporaryDirectory(prefix="edgeopt-quant-") as tmp:
        pre = ort_ptq.preprocess(fp32, Path(tmp) / "pre.onnx")
        path = ort_ptq.quantize(
            pre,
            Path(tmp) / "q.onnx",
            input_name=input_name,
            calib=calib,
            calibrator=config.calibrator,
            bits=config.bits,
            percentile=config.percentile,
            per_channel=config.per_channel,
        )
        final = out_dir / filename_for(config)
        shutil.copyfile(path, final)
    step = {
        "name": f"ptq:{config.calibrator.value}",
        "accuracy": None,
        "val_accuracy": None,
        "within_budget": None,
        "note": UNLABELLED,
    }
    result = QuantizedModel(
        path=final,
        accuracy_float=None,
        accuracy_quantized=None,
        config=config,
        steps=[step],
        quant_path="ptq",
        calibrator=config.calibrator,
        within_budget=True,
        validation={"note": UNLABELLED, "calibration_samples": int(len(calib))},
        measured_on=data.splits.get("test"),
        sparsity=sparsity,
    )
    result.save(out_dir)
    return result


def _export_and_ptq(
    module, source: Model, work: Path, input_name: str, calib, calibrator: Calibrator, config: QuantConfig
) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(Model(module, source.spec), work / "model.onnx")
    pre = ort_ptq.preprocess(onnx_path, work / "pre.onnx")
    return ort_ptq.quantize(
        pre,
        work / "q.onnx",
        input_name=input_name,
        calib=calib,
        calibrator=calibrator,
        bits=config.bits,
        percentile=config.percentile,
        per_channel=config.per_channel,
    )
