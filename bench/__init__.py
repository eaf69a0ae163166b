"""Benchmarks for chatd: reference servers, a load generator and scenarios."""
