"""Benchmark presets, reports and comparisons built on the trainer."""
