"""Benchmarks that need no training: the oracle benchmark (exact mixture score)."""
