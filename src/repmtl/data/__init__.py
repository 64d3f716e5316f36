"""Datasets. Every module here that registers a benchmark preset is imported by
``repmtl.experiments.benchmarks.available_benchmarks()``."""
