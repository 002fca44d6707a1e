"""torch -> ONNX (fp32), batch 1, named input and output."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch

from .models import Model

OPSET = 18


@contextlib.contextmanager
def _as_input_error(path: Path):
    """torch's exporter fails with many-line, coloured messages: one line, naming the model."""
    import re

    from edgeopt.errors import UnsupportedModelError

    try:
        yield
    except Exception as exc:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        cause = next(
            (line for line in lines if "Error" in line or "error" in line and not line.startswith("-")),
            lines[0] if lines else type(exc).__name__,
        )
        raise UnsupportedModelError(
            f"torch cannot export the model to ONNX: {cause[:300]}",
            hint="the model must trace with torch.export (no data-dependent control flow); or bring it as ONNX",
        ) from None


def export_onnx(model: Model, path: Path) -> Path:
    """Export with torch's dynamo exporter; its chatter goes nowhere (stdout is for --json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(model.spec.shape)
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), _as_input_error(path):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            model.module.eval(),
            (example,),
            str(path),
            input_names=[model.spec.name],
            output_names=[model.spec.output_name],
            dynamo=True,
            opset_version=OPSET,
            verbose=False,
            external_data=False,
        )
    return path
