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


def export_onnx(model: Model, path: Path) -> Path:
    """Export with torch's dynamo exporter; its chatter goes nowhere (stdout is for --json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(model.spec.shape)
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
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
