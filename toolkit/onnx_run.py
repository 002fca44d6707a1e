"""The host's onnxruntime reference lives in edgeopt/reference.py (compile/ uses it too)."""

from edgeopt.reference import predict, session

__all__ = ["predict", "session"]
