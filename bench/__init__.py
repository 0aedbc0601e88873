"""Benchmarks of sda; run ``python -m bench.pretrain --help`` (see bench/README.md)."""
