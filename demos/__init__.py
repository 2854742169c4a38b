"""Runnable demos that reproduce the classic CWM figures; run each with ``python -m demos.NAME``."""
