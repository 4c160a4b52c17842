"""Benchmarks that show where time goes: `python -m benchmarks.run`."""
