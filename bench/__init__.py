"""Benchmarks for searchd (not part of the installed package)."""
