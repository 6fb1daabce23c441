"""Replay-log analysis: tracking, timing and model-prediction error, with plots."""
