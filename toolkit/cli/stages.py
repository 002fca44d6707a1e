"""The stage commands: run (the whole flow), prune, quantize, compile, targets. Each is a thin
shell over the stage's Python API (toolkit/pipeline.py, prune/, quantize/, compile/)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Optional

import typer

from ..config import CompileConfig, RunConfig
from ..progress import Progress
from ..prune import PruneConfig
from ..quantize import QuantConfig
from .options import (
    BOARD_HELP,
    DATA_HELP,
    Factory,
    LocalPort,
    Quiet,
    TestData,
    TrustNewHost,
    ValData,
    choice,
    default,
    given,
    json_flag,
    print_json,
    stdout_to_stderr,
)

app = typer.Typer()
RunJson = json_flag("one JSON report")
PruneJson = json_flag("prune.json")
QuantJson = json_flag("quant.json")
CompileJson = json_flag("a JSON summary")


@app.command()
def run(
    ctx: typer.Context,
    model: str = typer.Option(
        default(RunConfig, "model"),
        help="built-in name (mlp, cnn, resnet; trained here) or your own model file: a torch.save'd "
        "nn.Module, a state dict (+ --factory), TorchScript, a torch.export .pt2, or ONNX",
    ),
    factory: Factory = None,
    data: str = typer.Option(
        default(RunConfig, "data"),
        help="'digits' or an .npz: x (samples as the model takes them), y (labels), "
        "optional x_val/y_val, x_test/y_test",
    ),
    val_data: ValData = None,
    test_data: TestData = None,
    target: str = typer.Option(default(RunConfig, "target"), help="compile target name (an emulated board: its own)"),
    board: str = typer.Option(default(RunConfig, "board"), help="'local' (embedded SSH board) or user@host[:port]"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with these options (flags win)"),
    out: Optional[Path] = typer.Option(None, help="keep every stage's artifact in this directory"),
    local_port: LocalPort = default(RunConfig, "local_port"),
    sparsity: float = typer.Option(default(RunConfig, "sparsity"), help="pruning target, a fraction"),
    allow_below_70: bool = typer.Option(False, "--allow-below-70", help="allow a sparsity target under 0.70"),
    method: str = typer.Option(default(RunConfig, "method"), help="pruning: magnitude (unstructured) | structured"),
    schedule: str = typer.Option(default(RunConfig, "schedule"), help="pruning schedule: oneshot | gradual"),
    distill: bool = typer.Option(False, "--distill", help="distill from the dense model while fine-tuning"),
    calibrator: str = typer.Option(default(RunConfig, "calibrator"), help="minmax | percentile | entropy"),
    budget: float = typer.Option(
        default(RunConfig, "budget"), help="allowed accuracy drop, a fraction (0.01 = 1 point)"
    ),
    epochs: int = typer.Option(default(RunConfig, "epochs"), help="training epochs (built-in models)"),
    seed: int = typer.Option(default(RunConfig, "seed"), help="random seed"),
    threads: Optional[int] = typer.Option(None, help="threads on the board [default: all its cores]"),
    trust_new_host: TrustNewHost = False,
    variants: bool = typer.Option(
        False,
        "--variants",
        help="also leave the dense fp32, pruned fp32 and pruned int8 "
        "bundles, untuned and tuned, in --out (for `edgeopt bench DIR`)",
    ),
    tune: bool = typer.Option(
        default(RunConfig, "tune"),
        "--tune",
        help="tune the bundle with MetaSchedule, the candidates "
        "timed on --board (TVM's RPC server there, through the SSH connection); records cached per board kind",
    ),
    tune_trials: int = typer.Option(
        default(RunConfig, "tune_trials"),
        help="MetaSchedule trials per tuned bundle (--tune, --variants); --variants with 0: no tuned ones",
    ),
    fast: bool = typer.Option(
        default(RunConfig, "fast"),
        "--fast",
        help="preset for speed: structured pruning, distillation, longer "
        "fine-tuning (docs/cli.md); --config and the other flags still win",
    ),
    as_json: RunJson = False,
    quiet: Quiet = False,
) -> None:
    """Train (built-ins) or load your model -> prune -> int8 PTQ -> TVM compile -> run on a board -> report."""
    from ..config import resolve
    from ..pipeline import run as run_pipeline
    from ..progress import Progress

    # flags given win over the --config file, which wins over RunConfig's defaults
    flags = given(
        ctx,
        {
            "model": model,
            "factory": factory,
            "data": data,
            "val_data": val_data,
            "test_data": test_data,
            "target": target,
            "board": board,
            "out": out,
            "local_port": local_port,
            "sparsity": sparsity,
            "allow_below_70": allow_below_70,
            "method": method,
            "schedule": schedule,
            "distill": distill,
            "calibrator": calibrator,
            "budget": budget,
            "epochs": epochs,
            "seed": seed,
            "threads": threads,
            "trust_new_host": trust_new_host,
            "variants": variants,
            "tune": tune,
            "tune_trials": tune_trials,
            "fast": fast,
        },
    )
    cfg = resolve(flags, config)
    if cfg.variants and cfg.out is None:
        from edgeopt.errors import UsageError

        raise UsageError(
            "--variants needs --out DIR: the bundles are left there", hint="edgeopt run --variants --out DIR"
        )
    progress = Progress(quiet=quiet)
    with stdout_to_stderr():  # library chatter never reaches stdout
        report = run_pipeline(cfg, progress=progress)
    if as_json:
        print_json(report)
    else:
        from rich.console import Console

        from ..report import render_table

        Console().print(render_table(report))
        if cfg.out:
            Console(stderr=True).print(f"artifacts in {cfg.out}")


@app.command("prune")
def prune_cmd(
    model: str = typer.Argument(
        ...,
        help="built-in name (mlp, cnn, resnet; trained here first), a stage directory, "
        "or your own model file: torch.save'd nn.Module, state dict (+ --factory), "
        "TorchScript, torch.export .pt2, ONNX",
    ),
    data: str = typer.Option(default(RunConfig, "data"), help=DATA_HELP),
    val_data: ValData = None,
    test_data: TestData = None,
    target: float = typer.Option(default(PruneConfig, "target"), help="fraction of prunable weights to zero or remove"),
    method: str = typer.Option(
        default(PruneConfig, "method"), help="magnitude (unstructured) | structured (removes neurons/filters)"
    ),
    schedule: str = typer.Option(
        default(PruneConfig, "schedule"), help="oneshot | gradual (cubic, fine-tuning between steps)"
    ),
    scope: str = typer.Option(
        default(PruneConfig, "scope"), help="global (one threshold) | layer (same ratio per layer)"
    ),
    allocation: str = typer.Option(
        default(PruneConfig, "allocation"), help="uniform | sensitivity (per-layer ratios from a scan)"
    ),
    latency_weighted: bool = typer.Option(
        False, "--latency-weighted", help="sensitivity allocation also weighs each layer's TVM latency"
    ),
    importance: str = typer.Option(
        default(PruneConfig, "importance"), help="l1 | l2 (structured: norm of a channel's weights)"
    ),
    exclude: Optional[list[str]] = typer.Option(None, help="a layer name never to prune (repeatable)"),
    steps: int = typer.Option(default(PruneConfig, "steps"), help="gradual: pruning steps"),
    epochs: int = typer.Option(
        default(PruneConfig, "epochs_per_step"),
        help="fine-tuning epochs after each step (the last step gets --final-epochs)",
    ),
    final_epochs: int = typer.Option(
        default(PruneConfig, "final_epochs"), help="fine-tuning epochs after the last step"
    ),
    distill: bool = typer.Option(False, "--distill", help="distill from the dense model while fine-tuning"),
    budget: Optional[float] = typer.Option(
        None,
        help="allowed drop of validation accuracy, a fraction; past it, up to 3 recovery rounds of "
        "fine-tuning distilled from the dense model (default: none)",
    ),
    finetune_epochs: int = typer.Option(0, help="transfer learning: fine-tune on DATA before pruning (0: no)"),
    freeze: int = typer.Option(0, help="transfer learning: freeze the first N Linear/Conv layers"),
    factory: Factory = None,
    train_epochs: int = typer.Option(default(RunConfig, "epochs"), help="epochs to train a built-in model first"),
    allow_below_70: bool = typer.Option(False, "--allow-below-70", help="allow a target under 0.70"),
    seed: int = typer.Option(default(PruneConfig, "seed"), help="random seed"),
    out: Path = typer.Option(..., help="write pruned.pt, spec.json, prune.json here"),
    as_json: PruneJson = False,
    quiet: Quiet = False,
) -> None:
    """Prune a model to a sparsity target and report sparsity three ways."""
    from ..prune import Allocation, Importance, Method, Schedule, Scope

    config = PruneConfig(
        target=target,
        method=choice(Method, method, "--method"),
        schedule=choice(Schedule, schedule, "--schedule"),
        scope=choice(Scope, scope, "--scope"),
        allocation=choice(Allocation, allocation, "--allocation"),
        importance=choice(Importance, importance, "--importance"),
        exclude=tuple(exclude or ()),
        steps=steps,
        epochs_per_step=epochs,
        final_epochs=final_epochs,
        distill=distill,
        seed=seed,
        allow_below_70=allow_below_70,
        latency_weighted=latency_weighted,
        budget=budget,
    )
    config.validate()  # before anything is loaded or trained
    from ..inputs import check_model_spec

    check_model_spec(model)
    progress = Progress(quiet=quiet)
    with stdout_to_stderr():  # library chatter never reaches stdout
        from ..inputs import resolve_model
        from ..stages import data_stage, label_by_original, prune_stage
        from ..transfer import finetune

        dataset = data_stage(data, val=val_data, test=test_data, progress=progress)
        with progress.stage("model", f"load model ({model})") as st:
            dense, how = resolve_model(model, dataset, factory=factory, train_epochs=train_epochs, seed=seed)
            if not dataset.labelled:  # the model's own top-1 stands in: accuracy = agreement with it
                dataset, dense.accuracy = label_by_original(dataset, dense)
                how += "; the data has no labels: every accuracy below is agreement with this model's top-1"
            st["note"] = f"{how}; accuracy {dense.accuracy:.4f} ({dataset.splits.get('test')})"
        transfer = None
        if finetune_epochs:
            with progress.stage("finetune", f"fine-tune on {data} ({finetune_epochs} epochs, {freeze} frozen)") as st:
                dense, transfer = finetune(dense, dataset, epochs=finetune_epochs, freeze=freeze, seed=seed)
                st["note"] = f"accuracy {dense.accuracy:.4f}"
        result = prune_stage(
            dense,
            dataset,
            config=config,
            out=out,
            progress=progress,
            transfer=transfer,
            on_step=None
            if quiet
            else lambda s: progress.console.print(
                f"  step {s['step']}: removed {s['removed']:.3f}, val accuracy {s['val_accuracy']:.4f}"
            ),
        )
    doc = result.to_json()
    if as_json:
        print_json(doc)
    else:
        from rich.console import Console

        from ..report import render_prune_table

        Console().print(render_prune_table(doc))


@app.command("quantize")
def quantize_cmd(
    model: str = typer.Argument(
        ...,
        help="a stage directory (pruned.pt/model.pt + spec.json), a built-in name "
        "(trained first), or your own model file: torch.save'd nn.Module, state dict "
        "(+ --factory), TorchScript, .pt2, or an .onnx (PTQ only)",
    ),
    data: str = typer.Option(default(RunConfig, "data"), help=DATA_HELP),
    val_data: ValData = None,
    test_data: TestData = None,
    bits: int = typer.Option(default(QuantConfig, "bits"), help="8, 16, or 4 (4-bit weights, 8-bit activations)"),
    scheme: str = typer.Option(
        default(QuantConfig, "scheme"),
        help="uniform (integer QDQ) | kmeans (non-uniform weight sharing, --bits index bits)",
    ),
    calibrator: str = typer.Option(
        default(QuantConfig, "calibrator"), help="minmax | percentile | entropy: the first PTQ attempt"
    ),
    percentile: float = typer.Option(default(QuantConfig, "percentile"), help="percentile calibrator's percentile"),
    calibration_samples: int = typer.Option(
        default(QuantConfig, "calibration_samples"), help="training samples used to calibrate"
    ),
    per_tensor_weights: bool = typer.Option(
        False, "--per-tensor-weights", help="one weight scale per tensor, not per channel"
    ),
    budget: float = typer.Option(
        default(QuantConfig, "budget"), help="allowed top-1 drop below the float model, a fraction (0.01 = 1 point)"
    ),
    budget_relative: bool = typer.Option(
        False, "--budget-relative", help="--budget is a fraction of the float accuracy"
    ),
    fallback_max_fraction: float = typer.Option(
        default(QuantConfig, "fallback_max_fraction"), help="at most this share of the layers may stay float"
    ),
    no_qat: bool = typer.Option(False, "--no-qat", help="never fall back to quantization-aware training"),
    qat_epochs: int = typer.Option(
        default(QuantConfig, "qat_epochs"), help="QAT epochs (the float fine-tune control gets the same)"
    ),
    factory: Factory = None,
    seed: int = typer.Option(default(QuantConfig, "seed"), help="random seed"),
    out: Path = typer.Option(..., help="write model.onnx, the quantized model and quant.json here"),
    as_json: QuantJson = False,
    quiet: Quiet = False,
) -> None:
    """Quantize: PTQ first; other calibrators, per-layer float fallback, then QAT only if the budget is blown.
    Exit code 4 if nothing met the budget (the best attempt is still written)."""
    from edgeopt.errors import AccuracyBudgetError

    from ..inputs import check_model_spec, resolve_model
    from ..quantize import Calibrator, Scheme

    config = QuantConfig(
        bits=bits,
        scheme=choice(Scheme, scheme, "--scheme"),
        calibrator=choice(Calibrator, calibrator, "--calibrator"),
        calibration_samples=calibration_samples,
        percentile=percentile,
        per_channel=not per_tensor_weights,
        budget=budget,
        budget_relative=budget_relative,
        fallback_max_fraction=fallback_max_fraction,
        qat=not no_qat,
        qat_epochs=qat_epochs,
        seed=seed,
    )
    config.validate()
    check_model_spec(model)
    progress = Progress(quiet=quiet)
    with stdout_to_stderr():  # library chatter never reaches stdout
        from ..stages import data_stage, quantize_stage

        dataset = data_stage(data, val=val_data, test=test_data, progress=progress)
        if model.endswith(".onnx"):
            from ..inputs import check_onnx_fit

            source = Path(model)
            check_onnx_fit(source, dataset)
        else:
            with progress.stage("model", f"load model ({model})") as st:
                source, how = resolve_model(model, dataset, factory=factory, seed=seed)
                st["note"] = f"{how}; " + (
                    f"accuracy {source.accuracy:.4f}" if source.accuracy is not None else "no labels: no accuracy"
                )
        sparsity = None
        if Path(model, "prune.json").is_file():  # carried on to the bundle's manifest by `edgeopt compile`
            from ..pipeline import manifest_sparsity
            from ..prune import PrunedModel

            sparsity = manifest_sparsity(PrunedModel.load(Path(model)))
        result = quantize_stage(
            source,
            dataset,
            config=config,
            out=out,
            progress=progress,
            sparsity=sparsity,
            title=f"quantize ({scheme}, {bits} bits, budget {budget})",
            on_step=None
            if quiet
            else lambda s: progress.console.print(
                f"  {s['name']}: validation accuracy {s['val_accuracy']:.4f}"
                f"{'' if s['within_budget'] else ' (over budget)'}"
            ),
        )
    doc = result.to_json()
    if as_json:
        print_json(doc)
    else:
        a = doc["accuracy"]
        if a["quantized"] is None:
            print(
                f"{doc['quantization']['path']}: calibrated on unlabelled data; no accuracy measured or "
                f"claimed; {result.path}"
            )
        else:
            print(
                f"{doc['quantization']['path']}: accuracy {a['float']:.4f} -> {a['quantized']:.4f} "
                f"(drop {a['drop']:+.4f}); {len(doc['steps'])} step(s); {result.path}"
            )
    if not result.within_budget:
        raise AccuracyBudgetError(
            f"no step met the budget {budget}; the best attempt ({result.steps[-1]['name']}) is in {result.path}",
            hint="see quant.json's steps; raise --budget or allow QAT",
        )


@app.command("compile")
def compile_cmd(
    model: Path = typer.Argument(
        ...,
        help="an ONNX model (fp32 or QDQ int8), or a torch model file (torch.save'd module, "
        "state dict + --factory, TorchScript, .pt2) with --input-shape input=1,...",
    ),
    target: str = typer.Option(default(CompileConfig, "target"), help="target name; `edgeopt targets` lists them"),
    factory: Factory = None,
    out: Path = typer.Option(..., help="bundle directory to write (replaced only once the new one is complete)"),
    input_shape: Optional[list[str]] = typer.Option(
        None, help="NAME=1,3,32,32 for an input with a symbolic shape (repeatable)"
    ),
    tune: bool = typer.Option(
        False,
        "--tune",
        help="tune with MetaSchedule, timing on this machine (host target) or on --board; the database is cached",
    ),
    board: Optional[list[str]] = typer.Option(
        None,
        "--board",
        help="with --tune: time the candidates on this board "
        "(repeat, or name a [groups] entry, for a farm); "
        "needed for an Arm target. " + BOARD_HELP,
    ),
    trust_new_host: TrustNewHost = False,
    trials: int = typer.Option(
        default(CompileConfig, "tune_trials"), help="tuning trials in all, most to the heaviest tasks (with --tune)"
    ),
    tune_threads: int = typer.Option(
        default(CompileConfig, "tune_threads"),
        help="threads the tuned schedules are made for (with --tune); 1 suits small "
        "models, whose kernels are too short to gain from a parallel launch",
    ),
    no_onnx: bool = typer.Option(
        False, "--no-onnx", help="leave the ONNX model out of the bundle (no onnxruntime baseline on the board)"
    ),
    float_arith: bool = typer.Option(
        False,
        "--float-arith",
        help="int8 QDQ models: keep TVM's fp32 arithmetic instead of int8 x int8 -> int32 kernels",
    ),
    scale: float = typer.Option(
        default(CompileConfig, "scale"),
        help="input preprocessing the model expects, recorded in the manifest: x * scale",
    ),
    mean: Optional[list[float]] = typer.Option(None, help="... then (x - mean) / std, per channel (repeatable)"),
    std: Optional[list[float]] = typer.Option(None, help="see --mean"),
    as_json: CompileJson = False,
    quiet: Quiet = False,
) -> None:
    """Compile an ONNX model with TVM into a bundle (model.so + manifest.json) for a target."""
    from edgeopt.compile import get_target

    from edgeopt.errors import InputError, UsageError

    from ..progress import Progress
    from ..stages import compile_stage

    tgt = get_target(target)
    shapes = {}
    for item in input_shape or []:
        name, _, dims = item.partition("=")
        try:
            shapes[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            raise UsageError(f"--input-shape {item!r} is not NAME=D1,D2,...") from None
        if not name or any(d <= 0 for d in shapes[name]):
            raise UsageError(f"--input-shape {item!r} is not NAME=D1,D2,... with positive sizes")
    if not model.is_file():
        raise InputError(f"model not found: {model}", hint="pass an .onnx file or a torch model file")
    if board and not tune:
        raise UsageError("--board times tuning candidates: it needs --tune")
    progress = Progress(quiet=quiet)
    with stdout_to_stderr():  # library chatter never reaches stdout
        model, extra = _compile_source(model, shapes, factory, out)
        with contextlib.ExitStack() as boards:  # the boards' RPC servers, stopped however the compile ends
            pool = None
            if tune and board:
                from ..boards.tuning import tuning_boards

                with progress.stage("boards", f"starting TVM's RPC server on {', '.join(board)}"):
                    pool = boards.enter_context(tuning_boards(board, tgt, trust_new_host=trust_new_host))
            declared = scale != default(CompileConfig, "scale") or bool(mean) or bool(std)
            pre = (
                {"scale": scale, "mean": list(mean or [0.0]), "std": list(std or [1.0]), "declared": True}
                if declared
                else None
            )
            bundle, parity = compile_stage(
                model,
                target=tgt,
                out=out,
                progress=progress,
                title=f"TVM compile {model.name} for {tgt.name}"
                + (f", tuning {trials} trials" if tune else "")
                + (f" on {len(pool.endpoints)} board(s)" if pool is not None else ""),
                tune_trials=trials if tune else 0,
                input_shapes=(shapes if model.suffix == ".onnx" and extra.get("onnx_given") else None) or None,
                extra_manifest={k: v for k, v in extra.items() if k != "onnx_given"} or None,
                tune_threads=tune_threads,
                onnx_copy=not no_onnx,
                integer=not float_arith,
                preprocessing=pre,
                tune_boards=pool,
            )
    t = bundle.manifest["target"]
    doc = {
        "bundle": {"path": str(bundle.path), "bytes": bundle.bytes, "id": bundle.id},
        "target": {"name": t["name"], "triple": t["triple"], "arch": t["arch"], "mcpu": t["mcpu"]},
        "parity": parity.to_json() if parity else {"max_abs_diff": None, "checked_on": "board"},
        "tuning": bundle.manifest.get("tuning"),
        "arithmetic": bundle.manifest["arithmetic"],
        "inputs": bundle.manifest["inputs"],
        "outputs": bundle.manifest["outputs"],
    }
    if as_json:
        print_json(doc)
    else:
        p = doc["parity"]
        print(
            f"bundle {bundle.path} ({bundle.bytes:,} bytes) for {t['name']} ({t['triple']}, mcpu {t['mcpu']}); "
            + (
                f"parity with onnxruntime: max abs diff {p['max_abs_diff']:.3g}"
                if parity
                else "parity is checked on the board"
            )
        )


def _compile_source(model: Path, shapes: dict, factory: str | None, out: Path) -> tuple[Path, dict]:
    """(the ONNX to compile, manifest additions). A torch model file is exported to ONNX first with
    the --input-shape given; the pruning stage's sparsity comes along from a quant.json beside it."""
    from edgeopt.errors import InputError, UsageError

    from ..loader import ModelFormat, load, sniff

    extra: dict = {}
    quant_json = model.parent / "quant.json"
    if quant_json.is_file():
        try:
            carried = json.loads(quant_json.read_text()).get("sparsity")
        except ValueError:
            carried = None
        if carried:
            extra["sparsity"] = carried
    fmt = sniff(model)
    if fmt is ModelFormat.onnx:
        return model, {**extra, "onnx_given": True}
    if fmt is None:
        raise InputError(f"{model} is not a model edgeopt can read", hint="pass an .onnx file or a torch model file")
    if len(shapes) != 1:
        raise UsageError(
            f"{model} is a torch model: give its input shape, --input-shape input=1,C,H,W (or 1,C,L or 1,F)"
        )
    shape = tuple(next(iter(shapes.values())))
    loaded = load(model, factory=factory, sample_shape=shape)
    from ..export import export_onnx
    from ..models import InputSpec, Model

    onnx_path = out.parent / f".{out.name}.source.onnx"
    try:
        export_onnx(Model(loaded.module, InputSpec(name=next(iter(shapes)), shape=shape)), onnx_path)
    except Exception as exc:
        raise InputError(
            f"{model} ({loaded.found}) does not run on inputs of shape {shape}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
            hint="give the shape the model takes with --input-shape",
        ) from None
    return onnx_path, extra


@app.command("targets")
def targets_cmd() -> None:
    """List the compile targets."""
    from edgeopt.compile import TARGETS

    for t in TARGETS.values():
        print(f"{t.name:<12} {t.arch:<8} {t.description}")
