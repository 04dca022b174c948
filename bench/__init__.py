"""Benchmarks: `make bench` runs them all and writes their numbers to out/bench/."""
