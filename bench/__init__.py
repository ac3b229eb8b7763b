"""Benchmarks (not tests): see bench/README.md and docs/BENCHMARKS.md."""
