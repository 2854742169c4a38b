"""Pretraining for CWMs with Accelerate: config, data, objective, loop, checkpoints, export.

Entry points: ``python -m pretrain`` (``pretrain.__main__.main``), :func:`pretrain.train.train`,
:func:`pretrain.export.export_checkpoint`. See ``pretrain/README.md``.
"""
