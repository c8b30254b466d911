"""Helpers for the benchmark report (BENCHMARKS.md)."""
