"""Benchmarks that compare the app over HTTP with the engines in-process, in one run."""
