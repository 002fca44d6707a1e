"""No input a user can give exits 70: a corpus of bad models and bad data through every command
that takes them. Each must end in one line naming the user's own file, exit 3, and a fix."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from edgeopt.toolkit import examples
from edgeopt.toolkit.cli import main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgeopt.errors import InputError

FEATURES = examples.FAMILIES["mlp"].sample_shape  # (20,)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    good = {"x": rng.normal(size=(40, 20)).astype(np.float32), "y": rng.integers(0, 4, 40)}
    np.savez(d / "good.npz", **good)
    model = examples.build("mlp").eval()
    torch.save(model, d / "good.pt")
    data = {
        "wrong_rank.npz": dict(x=np.zeros(40, np.float32), y=np.zeros(40, np.int64)),
        "wrong_dtype.npz": dict(x=np.array([["a"] * 20] * 40), y=np.zeros(40, np.int64)),
        "wrong_size.npz": dict(x=np.zeros((40, 3, 8, 8), np.float32), y=np.zeros(40, np.int64)),
        "labels_out_of_range.npz": dict(x=good["x"], y=np.full(40, 9)),
        "float_labels.npz": dict(x=good["x"], y=np.zeros(40, np.float32)),
        "empty.npz": dict(x=np.zeros((0, 20), np.float32), y=np.zeros(0, np.int64)),
        "nan.npz": dict(x=np.full((40, 20), np.nan, np.float32), y=np.zeros(40, np.int64)),
        "pickled.npz": dict(x=np.array([object()] * 40, dtype=object), y=np.zeros(40, np.int64)),
        "too_few.npz": dict(x=good["x"][:4], y=good["y"][:4]),
        "no_x.npz": dict(images=good["x"]),
    }
    for name, arrays in data.items():
        np.savez(d / name, **arrays)
    (d / "not_npz.npz").write_bytes(b"this is a csv,1,2,3\n")
    (d / "text.npz").write_text("x,y\n1,2\n")
    (d / "garbage.pt").write_bytes(b"\x00\x01garbage")
    (d / "garbage.onnx").write_bytes(b"not onnx at all")
    torch.save({"not": "a model"}, d / "dict.pt")
    torch.save(model.state_dict(), d / "state.pt")
    torch.save([1, 2, 3], d / "list.pt")
    # a class pickled under __main__, as a user's script does
    script = d / "train_script.py"
    script.write_text(
        textwrap.dedent(f"""
        import torch
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__(); self.fc = torch.nn.Linear(20, 4)
            def forward(self, x):
                return self.fc(x)
        torch.save(Net(), {str(d / "main.pt")!r})
    """)
    )
    subprocess.run([sys.executable, str(script)], check=True)
    # a model whose output is not N x classes
    torch.save(torch.nn.Sequential(torch.nn.Linear(20, 4), torch.nn.Flatten(0)), d / "bad_output.pt")
    return d


BAD_DATA = [
    "wrong_rank.npz",
    "wrong_dtype.npz",
    "wrong_size.npz",
    "labels_out_of_range.npz",
    "float_labels.npz",
    "empty.npz",
    "nan.npz",
    "pickled.npz",
    "too_few.npz",
    "no_x.npz",
    "not_npz.npz",
    "text.npz",
    "missing.npz",
]
BAD_MODELS = ["garbage.pt", "garbage.onnx", "dict.pt", "state.pt", "list.pt", "main.pt", "bad_output.pt", "missing.pt"]


def _commands(model: str, data: str, out: Path) -> dict[str, list[str]]:
    return {
        "run": ["run", "--model", model, "--data", data, "--out", str(out / "run"), "--quiet"],
        "prune": ["prune", model, "--data", data, "--out", str(out / "prune"), "--quiet"],
        "quantize": ["quantize", model, "--data", data, "--out", str(out / "quant"), "--quiet"],
    }


def _assert_one_clear_line(capsys, code: int, names: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 3, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert names in lines[0], lines[0]
    assert "(" in lines[0] and lines[0].endswith(")"), f"no fix given: {lines[0]}"  # the hint


@pytest.mark.parametrize("command", ["run", "prune", "quantize"])
@pytest.mark.parametrize("bad", BAD_DATA)
def test_bad_data(corpus, tmp_path, capsys, command, bad):
    argv = _commands(str(corpus / "good.pt"), str(corpus / bad), tmp_path)[command]
    _assert_one_clear_line(capsys, main(argv), bad)


@pytest.mark.parametrize("command", ["run", "prune", "quantize", "compile"])
@pytest.mark.parametrize("bad", BAD_MODELS)
def test_bad_models(corpus, tmp_path, capsys, command, bad):
    if command == "compile":
        if bad == "bad_output.pt":
            return  # compile takes any output shape; only the stages that score accuracy need N x classes
        argv = ["compile", str(corpus / bad), "--input-shape", "input=1,20", "--out", str(tmp_path / "b"), "--quiet"]
    else:
        argv = _commands(str(corpus / bad), str(corpus / "good.npz"), tmp_path)[command]
    _assert_one_clear_line(capsys, main(argv), bad)


def test_main_pickle_gets_the_factory_fix(corpus, capsys):
    code = main(["prune", str(corpus / "main.pt"), "--data", str(corpus / "good.npz"), "--out", "/nonexistent/x", "-q"])
    err = capsys.readouterr().err
    assert code == 3 and "__main__" in err and "--factory module:build" in err


def test_onnx_with_data_of_the_wrong_shape(corpus, tmp_path, capsys):
    from edgeopt.toolkit.export import export_onnx
    from edgeopt.toolkit.models import InputSpec, Model

    onnx_path = export_onnx(Model(examples.build("mlp"), InputSpec("input", (1, 20))), tmp_path / "mine.onnx")
    for argv in (
        ["quantize", str(onnx_path), "--data", "digits", "--out", str(tmp_path / "q"), "-q"],
        ["prune", str(onnx_path), "--data", "digits", "--out", str(tmp_path / "p"), "-q"],
    ):
        _assert_one_clear_line(capsys, main(argv), "mine.onnx")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=5, min_side=1, max_side=24),
    dtype=st.sampled_from([np.float32, np.float64, np.int32, np.uint8, np.bool_, np.complex64]),
)
def test_any_data_shape_fits_or_is_an_input_error(corpus, shape, dtype):
    """Samples of any rank, size and dtype: loaded as they are and run, or one InputError."""
    from edgeopt.toolkit.data import load_npz
    from edgeopt.toolkit.inputs import resolve_model

    n = shape[0]
    x = np.ones(shape, dtype=dtype)
    path = corpus / f"h_{'x'.join(map(str, shape))}_{np.dtype(dtype).name}.npz"
    np.savez(path, x=x, y=np.arange(n) % 4)
    try:
        data = load_npz(path)
        model, _ = resolve_model(str(corpus / "good.pt"), data)
    except InputError as exc:
        assert path.name in str(exc) or "data" in str(exc)
        return
    # what got through is exactly what the model takes, unchanged
    assert data.x_train.shape[1:] == FEATURES == tuple(shape[1:])
    assert model.accuracy is not None
