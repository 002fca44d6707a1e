"""Everything that touches Apache TVM on the host lives here, and nothing else imports tvm.

TVM's Python API moves fast (Relay and tvmc are gone in 0.2x); this package absorbs the churn.
"""

from .bundle import Bundle
from .targets import TARGETS, Target, get_target

__all__ = ["Bundle", "TARGETS", "Target", "get_target", "compile_onnx"]


def compile_onnx(*args, **kwargs):
    from .build import compile_onnx as _compile

    return _compile(*args, **kwargs)
