"""Evaluation sweeps and controller tuning, serially or on Ray (``python -m tools.sweep``)."""
