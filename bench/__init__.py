"""Benchmarks that drive a real `justtrades serve` process over 127.0.0.1; run them as `python -m bench.NAME`."""
