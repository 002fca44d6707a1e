"""edgeopt: prune, quantize, compile with Apache TVM and run a model on an edge board over SSH.

One import namespace for the three parts the repository keeps as top-level folders:
`edgeopt.toolkit` (host side, CLI), `edgeopt.compile` (everything that touches TVM) and
`edgeopt.board` (what runs on a board). `edgeopt.errors` is the leaf every part may import.
"""

__version__ = "0.1.0"
