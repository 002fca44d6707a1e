"""The `edgeopt` command: a thin shell over the Python API. `main(argv) -> exit code`.

Exit codes (docs/cli.md): 0 ok; 1 other edgeopt error; 2 bad option or value; 3 bad input file;
4 accuracy budget not met; 5 compile failed; 6 bad bundle; 7 board failure; 8 host key refused;
70 internal error (a bug: please report it); 130 interrupted.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator, Optional

import typer

from edgeopt.errors import EdgeoptError

app = typer.Typer(
    name="edgeopt",
    help="Prune, quantize, compile with TVM and run a model on an edge board over SSH.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """edgeopt: model in, a smaller faster model running on a board out, with a report."""


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Everything written to stdout (by us, torch, TVM's C++ logs) goes to stderr meanwhile,
    so that --json leaves exactly one JSON document on stdout."""
    sys.stdout.flush()
    saved_fd = os.dup(1)
    saved_obj = sys.stdout
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        sys.stdout = saved_obj


@app.command()
def run(
    model: Optional[str] = typer.Option(None, help="built-in name (mlp, cnn, resnet; trained here) or your own model file: a torch.save'd nn.Module, a state dict (+ --factory), TorchScript, a torch.export .pt2, or ONNX [default: mlp]"),
    factory: Optional[str] = typer.Option(None, help="package.module:function building the model a state dict is for"),
    data: Optional[str] = typer.Option(None, help="'digits' or an .npz: x (samples as the model takes them), y (labels), "
                                                  "optional x_val/y_val, x_test/y_test [default: digits]"),
    val_data: Optional[Path] = typer.Option(None, help="an .npz (x, y): the validation split (decisions), instead of carving one"),
    test_data: Optional[Path] = typer.Option(None, help="an .npz (x, y): the held-out test split every accuracy is measured on"),
    target: Optional[str] = typer.Option(None, help="compile target name [default: host]"),
    board: Optional[str] = typer.Option(None, help="'local' (embedded SSH board) or user@host[:port] [default: local]"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with these options (flags win)"),
    out: Optional[Path] = typer.Option(None, help="keep every stage's artifact in this directory"),
    local_port: Optional[int] = typer.Option(None, help="port for the local board [default: a free one]"),
    sparsity: Optional[float] = typer.Option(None, help="pruning target, a fraction [default: 0.70]"),
    allow_below_70: Optional[bool] = typer.Option(None, "--allow-below-70", help="allow a sparsity target under 0.70"),
    method: Optional[str] = typer.Option(None, help="pruning: magnitude (unstructured) | structured [default: magnitude]"),
    schedule: Optional[str] = typer.Option(None, help="pruning schedule: oneshot | gradual [default: gradual]"),
    distill: Optional[bool] = typer.Option(None, "--distill", help="distill from the dense model while fine-tuning"),
    calibrator: Optional[str] = typer.Option(None, help="minmax | percentile | entropy [default: minmax]"),
    budget: Optional[float] = typer.Option(None, help="allowed accuracy drop, a fraction (0.01 = 1 point)"),
    epochs: Optional[int] = typer.Option(None, help="training epochs [default: 20]"),
    seed: Optional[int] = typer.Option(None, help="random seed [default: 0]"),
    threads: Optional[int] = typer.Option(None, help="threads on the board [default: all its cores]"),
    trust_new_host: Optional[bool] = typer.Option(None, "--trust-new-host", help="record an unknown board's host key"),
    variants: Optional[bool] = typer.Option(None, "--variants", help="also leave the dense fp32, pruned fp32 and pruned int8 "
                                            "bundles, untuned and tuned, in --out (for `edgeopt bench DIR`)"),
    tune_trials: Optional[int] = typer.Option(None, help="--variants: MetaSchedule trials per tuned bundle; 0: no tuned ones [default: 16]"),
    fast: Optional[bool] = typer.Option(None, "--fast", help="preset for speed: structured pruning, distillation, longer "
                                        "fine-tuning (docs/cli.md); --config and the other flags still win"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON report on stdout, nothing else"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress on stderr"),
) -> None:
    """Train (built-ins) or load your model -> prune -> int8 PTQ -> TVM compile -> run on a board -> report."""
    from .config import resolve
    from .pipeline import run as run_pipeline
    from .progress import Progress

    flags = {
        "model": model, "factory": factory, "data": data, "val_data": val_data, "test_data": test_data, "target": target, "board": board, "out": out,
        "local_port": local_port, "sparsity": sparsity, "allow_below_70": allow_below_70,
        "method": method, "schedule": schedule, "distill": distill,
        "calibrator": calibrator, "budget": budget, "epochs": epochs, "seed": seed,
        "threads": threads, "trust_new_host": trust_new_host, "variants": variants, "tune_trials": tune_trials,
        "fast": fast,
    }
    cfg = resolve(flags, config)
    if cfg.variants and cfg.out is None:
        from edgeopt.errors import UsageError

        raise UsageError("--variants needs --out DIR: the bundles are left there", hint="edgeopt run --variants --out DIR")
    progress = Progress(quiet=quiet)
    with _stdout_to_stderr():  # library chatter never reaches stdout
        report = run_pipeline(cfg, progress=progress)
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
    else:
        from rich.console import Console

        from .report import render_table

        Console().print(render_table(report))
        if cfg.out:
            Console(stderr=True).print(f"artifacts in {cfg.out}")


@app.command("prune")
def prune_cmd(
    model: str = typer.Argument(..., help="built-in name (mlp, cnn, resnet; trained here first), a stage directory, "
                                          "or your own model file: torch.save'd nn.Module, state dict (+ --factory), "
                                          "TorchScript, torch.export .pt2, ONNX"),
    data: str = typer.Option("digits", help="'digits' or an .npz: x, y, optional x_val/y_val, x_test/y_test"),
    val_data: Optional[Path] = typer.Option(None, help="an .npz (x, y): the validation split"),
    test_data: Optional[Path] = typer.Option(None, help="an .npz (x, y): the held-out test split"),
    target: float = typer.Option(0.70, help="fraction of prunable weights to zero or remove"),
    method: str = typer.Option("magnitude", help="magnitude (unstructured) | structured (removes neurons/filters)"),
    schedule: str = typer.Option("gradual", help="oneshot | gradual (cubic, fine-tuning between steps)"),
    scope: str = typer.Option("global", help="global (one threshold) | layer (same ratio per layer)"),
    allocation: str = typer.Option("uniform", help="uniform | sensitivity (per-layer ratios from a scan)"),
    latency_weighted: bool = typer.Option(False, "--latency-weighted",
                                          help="sensitivity allocation also weighs each layer's TVM latency"),
    importance: str = typer.Option("l1", help="l1 | l2 (structured: norm of a channel's weights)"),
    exclude: Optional[list[str]] = typer.Option(None, help="a layer name never to prune (repeatable)"),
    steps: int = typer.Option(4, help="gradual: pruning steps"),
    epochs: int = typer.Option(2, help="fine-tuning epochs after each step (the last step gets --final-epochs)"),
    final_epochs: int = typer.Option(6, help="fine-tuning epochs after the last step"),
    distill: bool = typer.Option(False, "--distill", help="distill from the dense model while fine-tuning"),
    finetune_epochs: int = typer.Option(0, help="transfer learning: fine-tune on DATA before pruning"),
    freeze: int = typer.Option(0, help="transfer learning: freeze the first N Linear/Conv layers"),
    factory: Optional[str] = typer.Option(None, help="package.module:function building the model for a state dict"),
    train_epochs: int = typer.Option(40, help="epochs to train a built-in model first"),
    allow_below_70: bool = typer.Option(False, "--allow-below-70", help="allow a target under 0.70"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(..., help="write pruned.pt, spec.json, prune.json here"),
    as_json: bool = typer.Option(False, "--json", help="print prune.json on stdout, nothing else"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Prune a model to a sparsity target and report sparsity three ways."""
    from .prune import Allocation, Importance, Method, PruneConfig, Schedule, Scope
    from .prune import prune as run_prune
    from .progress import Progress

    config = PruneConfig(
        target=target, method=_choice(Method, method, "--method"), schedule=_choice(Schedule, schedule, "--schedule"),
        scope=_choice(Scope, scope, "--scope"), allocation=_choice(Allocation, allocation, "--allocation"),
        importance=_choice(Importance, importance, "--importance"), exclude=tuple(exclude or ()), steps=steps,
        epochs_per_step=epochs, final_epochs=final_epochs, distill=distill, seed=seed, allow_below_70=allow_below_70,
        latency_weighted=latency_weighted,
    )
    config.validate()  # before anything is loaded or trained
    from .inputs import check_model_spec

    check_model_spec(model)
    progress = Progress(quiet=quiet)
    with _stdout_to_stderr():  # library chatter never reaches stdout
        from .data import load_dataset
        from .inputs import resolve_model
        from .transfer import finetune

        with progress.stage("data", f"load data ({data})"):
            dataset = load_dataset(data, val=val_data, test=test_data)
            if not dataset.labelled:
                from edgeopt.errors import InputError

                raise InputError(f"{data} has no labels: pruning fine-tunes on labels and reports accuracy",
                                 hint="add y (and x_test/y_test) to the .npz")
        with progress.stage("model", f"load model ({model})") as st:
            dense, how = resolve_model(model, dataset, factory=factory, train_epochs=train_epochs, seed=seed)
            st["note"] = f"{how}; accuracy {dense.accuracy:.4f} ({dataset.splits.get('test')})"
        transfer = None
        if finetune_epochs:
            with progress.stage("finetune", f"fine-tune on {data} ({finetune_epochs} epochs, {freeze} frozen)") as st:
                dense, transfer = finetune(dense, dataset, epochs=finetune_epochs, freeze=freeze, seed=seed)
                st["note"] = f"accuracy {dense.accuracy:.4f}"
        with progress.stage("prune", f"prune to {target:.0%} ({method}, {schedule})") as st:
            result = run_prune(dense, dataset, config=config,
                               on_step=lambda s: progress.console.print(
                                   f"  step {s['step']}: removed {s['removed']:.3f}, val accuracy {s['val_accuracy']:.4f}")
                               if not quiet else None)
            st["note"] = f"sparsity {result.global_sparsity:.4f}, accuracy {result.accuracy_after:.4f}"
        doc = result.to_json()
        if transfer:
            doc["transfer"] = transfer
        result.save(out)
        (out / "prune.json").write_text(json.dumps(doc, indent=2) + "\n")
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        from rich.console import Console

        from .report import render_prune_table

        Console().print(render_prune_table(doc))


@app.command("quantize")
def quantize_cmd(
    model: str = typer.Argument(..., help="a stage directory (pruned.pt/model.pt + spec.json), a built-in name "
                                          "(trained first), or your own model file: torch.save'd nn.Module, state dict "
                                          "(+ --factory), TorchScript, .pt2, or an .onnx (PTQ only)"),
    data: str = typer.Option("digits", help="'digits' or an .npz: x, y, optional x_val/y_val, x_test/y_test"),
    val_data: Optional[Path] = typer.Option(None, help="an .npz (x, y): the validation split"),
    test_data: Optional[Path] = typer.Option(None, help="an .npz (x, y): the held-out test split"),
    bits: int = typer.Option(8, help="8, 16, or 4 (4-bit weights, 8-bit activations)"),
    scheme: str = typer.Option("uniform", help="uniform (integer QDQ) | kmeans (non-uniform weight sharing, --bits index bits)"),
    calibrator: str = typer.Option("minmax", help="minmax | percentile | entropy: the first PTQ attempt"),
    percentile: float = typer.Option(99.99, help="percentile calibrator's percentile"),
    calibration_samples: int = typer.Option(256, help="training samples used to calibrate"),
    per_tensor_weights: bool = typer.Option(False, "--per-tensor-weights", help="one weight scale per tensor, not per channel"),
    budget: float = typer.Option(0.01, help="allowed top-1 drop below the float model, a fraction (0.01 = 1 point)"),
    budget_relative: bool = typer.Option(False, "--budget-relative", help="--budget is a fraction of the float accuracy"),
    fallback_max_fraction: float = typer.Option(0.5, help="at most this share of the layers may stay float"),
    no_qat: bool = typer.Option(False, "--no-qat", help="never fall back to quantization-aware training"),
    qat_epochs: int = typer.Option(4, help="QAT epochs (the float fine-tune control gets the same)"),
    factory: Optional[str] = typer.Option(None, help="package.module:function building the model for a state dict"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(..., help="write model.onnx, the quantized model and quant.json here"),
    as_json: bool = typer.Option(False, "--json", help="print quant.json on stdout, nothing else"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Quantize: PTQ first; other calibrators, per-layer float fallback, then QAT only if the budget is blown.
    Exit code 4 if nothing met the budget (the best attempt is still written)."""
    from edgeopt.errors import AccuracyBudgetError
    from .inputs import check_model_spec, resolve_model
    from .progress import Progress
    from .quantize import Calibrator, QuantConfig, Scheme, quantize

    config = QuantConfig(
        bits=bits, scheme=_choice(Scheme, scheme, "--scheme"), calibrator=_choice(Calibrator, calibrator, "--calibrator"),
        calibration_samples=calibration_samples, percentile=percentile, per_channel=not per_tensor_weights,
        budget=budget, budget_relative=budget_relative, fallback_max_fraction=fallback_max_fraction, qat=not no_qat,
        qat_epochs=qat_epochs, seed=seed,
    )
    config.validate()
    check_model_spec(model)
    progress = Progress(quiet=quiet)
    with _stdout_to_stderr():  # library chatter never reaches stdout
        from .data import load_dataset

        with progress.stage("data", f"load data ({data})"):
            dataset = load_dataset(data, val=val_data, test=test_data)
        if model.endswith(".onnx"):
            from .inputs import check_onnx_fit

            source = Path(model)
            check_onnx_fit(source, dataset)
        else:
            with progress.stage("model", f"load model ({model})") as st:
                source, how = resolve_model(model, dataset, factory=factory, seed=seed)
                st["note"] = f"{how}; " + (f"accuracy {source.accuracy:.4f}" if source.accuracy is not None else "no labels: no accuracy")
        with progress.stage("quantize", f"quantize ({scheme}, {bits} bits, budget {budget})") as st:
            result = quantize(source, dataset, config=config, out_dir=out, on_step=lambda s: progress.console.print(
                f"  {s['name']}: validation accuracy {s['val_accuracy']:.4f}"
                f"{'' if s['within_budget'] else ' (over budget)'}") if not quiet else None)
            st["note"] = (f"path {result.quant_path}, accuracy {result.accuracy_float:.4f} -> {result.accuracy_quantized:.4f}"
                          if result.accuracy_quantized is not None else "calibrated on unlabelled data: no accuracy")
    doc = result.to_json()
    doc["accuracy"]["measured_on"] = dataset.splits.get("test")
    if Path(model, "prune.json").is_file():  # carried on to the bundle's manifest by `edgeopt compile`
        from .pipeline import manifest_sparsity
        from .prune import PrunedModel

        doc["sparsity"] = manifest_sparsity(PrunedModel.load(Path(model)))
    (out / "quant.json").write_text(json.dumps(doc, indent=2) + "\n")
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        a = doc["accuracy"]
        if a["quantized"] is None:
            print(f"{doc['quantization']['path']}: calibrated on unlabelled data; no accuracy measured or claimed; {result.path}")
        else:
            print(f"{doc['quantization']['path']}: accuracy {a['float']:.4f} -> {a['quantized']:.4f} "
                  f"(drop {a['drop']:+.4f}); {len(doc['steps'])} step(s); {result.path}")
    if not result.within_budget:
        raise AccuracyBudgetError(f"no step met the budget {budget}; the best attempt ({result.steps[-1]['name']}) "
                                  f"is in {result.path}", hint="see quant.json's steps; raise --budget or allow QAT")


@app.command("compile")
def compile_cmd(
    model: Path = typer.Argument(..., help="an ONNX model (fp32 or QDQ int8), or a torch model file (torch.save'd module, "
                                           "state dict + --factory, TorchScript, .pt2) with --input-shape input=1,..."),
    target: str = typer.Option("host", help="target name; `edgeopt targets` lists them"),
    factory: Optional[str] = typer.Option(None, help="package.module:function building the model a state dict is for"),
    out: Path = typer.Option(..., help="bundle directory to write (replaced only once the new one is complete)"),
    input_shape: Optional[list[str]] = typer.Option(None, help="NAME=1,3,32,32 for an input with a symbolic shape (repeatable)"),
    tune: bool = typer.Option(False, "--tune", help="tune with MetaSchedule (host targets); the database is cached"),
    trials: int = typer.Option(64, help="tuning trials in all, shared evenly by the tasks (with --tune)"),
    tune_threads: int = typer.Option(1, help="threads the tuned schedules are made for (with --tune); 1 suits small "
                                             "models, whose kernels are too short to gain from a parallel launch"),
    no_onnx: bool = typer.Option(False, "--no-onnx", help="leave the ONNX model out of the bundle (no onnxruntime baseline on the board)"),
    float_arith: bool = typer.Option(False, "--float-arith", help="int8 QDQ models: keep TVM's fp32 arithmetic instead of int8 x int8 -> int32 kernels"),
    scale: float = typer.Option(1.0, help="input preprocessing the model expects, recorded in the manifest: x * scale"),
    mean: Optional[list[float]] = typer.Option(None, help="... then (x - mean) / std, per channel (repeatable)"),
    std: Optional[list[float]] = typer.Option(None, help="see --mean"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary on stdout, nothing else"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Compile an ONNX model with TVM into a bundle (model.so + manifest.json) for a target."""
    from edgeopt.compile import compile_onnx, get_target

    from edgeopt.errors import InputError, UsageError
    from .progress import Progress

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
    progress = Progress(quiet=quiet)
    with _stdout_to_stderr():  # library chatter never reaches stdout
        model, extra = _compile_source(model, shapes, factory, out)
        with progress.stage("compile", f"TVM compile {model.name} for {tgt.name}" + (f", tuning {trials} trials" if tune else "")) as st:
            with progress.trials(trials if tune else 0) as on_trials:
                declared = scale != 1.0 or bool(mean) or bool(std)
                pre = {"scale": scale, "mean": list(mean or [0.0]), "std": list(std or [1.0]), "declared": True} if declared else None
                bundle, parity = compile_onnx(
                    model, target=tgt, out_dir=out, input_shapes=(shapes if model.suffix == ".onnx" and extra.get("onnx_given") else None) or None,
                    extra_manifest={k: v for k, v in extra.items() if k != "onnx_given"} or None,
                    tune_trials=trials if tune else 0,
                    tune_threads=tune_threads, onnx_copy=not no_onnx, integer=not float_arith, preprocessing=pre,
                    on_trials=on_trials)
            tuning = bundle.manifest.get("tuning")
            st["note"] = f"{bundle.bytes:,} bytes" + (
                f", tuning database {'reused' if tuning['reused'] else 'built'} ({tuning['trials']} trials, "
                f"{tuning.get('kept', 'tuned')} build kept; MetaSchedule's log: {tuning['log']})" if tuning else "")
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
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        p = doc["parity"]
        print(f"bundle {bundle.path} ({bundle.bytes:,} bytes) for {t['name']} ({t['triple']}, mcpu {t['mcpu']}); "
              + (f"parity with onnxruntime: max abs diff {p['max_abs_diff']:.3g}" if parity else "parity is checked on the board"))


def _compile_source(model: Path, shapes: dict, factory: str | None, out: Path) -> tuple[Path, dict]:
    """(the ONNX to compile, manifest additions). A torch model file is exported to ONNX first with
    the --input-shape given; the pruning stage's sparsity comes along from a quant.json beside it."""
    from edgeopt.errors import InputError, UsageError
    from .loader import ModelFormat, load, sniff

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
        raise UsageError(f"{model} is a torch model: give its input shape, --input-shape input=1,C,H,W (or 1,C,L or 1,F)")
    shape = tuple(next(iter(shapes.values())))
    loaded = load(model, factory=factory, sample_shape=shape)
    from .export import export_onnx
    from .models import InputSpec, Model

    onnx_path = out.parent / f".{out.name}.source.onnx"
    try:
        export_onnx(Model(loaded.module, InputSpec(name=next(iter(shapes)), shape=shape)), onnx_path)
    except Exception as exc:
        raise InputError(f"{model} ({loaded.found}) does not run on inputs of shape {shape}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                         hint="give the shape the model takes with --input-shape") from None
    return onnx_path, extra


@app.command("targets")
def targets_cmd() -> None:
    """List the compile targets."""
    from edgeopt.compile import TARGETS

    for t in TARGETS.values():
        print(f"{t.name:<12} {t.arch:<8} {t.description}")


def _choice(enum, value: str, flag: str):
    try:
        return enum(value)
    except ValueError:
        from edgeopt.errors import UsageError

        raise UsageError(f"{flag} must be one of {', '.join(e.value for e in enum)}, got {value!r}") from None


def _error(message: str) -> None:
    print(f"edgeopt: error: {message}", file=sys.stderr)


INTERRUPTED = "interrupted (Ctrl-C); on a board, the command stops with its session"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # typer turns a KeyboardInterrupt into a silent exit code 130; a flag set by our own SIGINT
    # handler tells that apart, so Ctrl-C always gets its line
    interrupted: list[bool] = []

    def on_sigint(signum, frame):
        interrupted.append(True)
        raise KeyboardInterrupt

    import signal
    import threading

    previous = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    try:
        return _main(argv, interrupted)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main(argv: list[str], interrupted: list[bool]) -> int:
    try:
        # without standalone mode, click returns a command's typer.Exit code instead of raising it
        code = app(args=argv, prog_name="edgeopt", standalone_mode=False)
        if interrupted:
            _error(INTERRUPTED)
            return 130
        return code if isinstance(code, int) else 0
    except typer.Exit as exc:
        if interrupted:
            _error(INTERRUPTED)
            return 130
        return exc.exit_code
    except typer.TyperException as exc:  # typer's (vendored) click: usage errors and the like
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message(), file=sys.stderr)
            return 2
        ctx = getattr(exc, "ctx", None)
        cmd = ctx.command_path if ctx is not None else "edgeopt"
        _error(f"{exc.format_message()} (see '{cmd} --help')")
        return getattr(exc, "exit_code", 2)
    except EdgeoptError as exc:
        _error(str(exc))
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        _error(INTERRUPTED)
        return 130
    except Exception as exc:  # a bug: one line by default, the traceback on request
        if os.environ.get("EDGEOPT_DEBUG"):
            raise
        _error(f"internal error: {type(exc).__name__}: {exc} (set EDGEOPT_DEBUG=1 for the traceback, and please report it)")
        return 70


def entry_point() -> None:
    try:
        code = main()
    except KeyboardInterrupt:  # a second Ctrl-C while the first one's clean-up ran
        _error(INTERRUPTED)
        code = 130
    sys.exit(code)


from . import cli_board  # noqa: E402,F401  (registers the board commands on `app`)
from . import cli_report  # noqa: E402,F401  (registers `edgeopt report ...` on `app`)
from . import cli_sweep  # noqa: E402,F401  (registers `edgeopt sweep` on `app`)
