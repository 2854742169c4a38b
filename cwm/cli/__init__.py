"""The ``cwm`` command line: :mod:`cwm.cli.main` plus one module per subcommand.

Each subcommand module has ``register(subparsers) -> parser`` and ``run(args) -> int`` and is a
thin layer over the Python API; :mod:`cwm.cli.common` holds what they share (the parser class
with "did you mean" hints, point/move parsers, planned atomic outputs). Nothing here imports
torch until a command runs.
"""
