"""The board agent: runs a bundle with the TVM runtime and prints one JSON document.

It is copied to the board with every deployment, so it may import only the standard library,
numpy and the TVM runtime (and onnxruntime for an optional baseline). Python >= 3.9.
"""

AGENT_VERSION = "0.2.0"
SCHEMA = "edgeopt.agent/1"
