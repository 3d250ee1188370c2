"""Benchmarks that print the figures the issues ask for (`python -m bench --help`).

Benchmarks are not tests: they print numbers and goals met or missed, and fail only when
a correctness check fails. `bench.service` is shared with the functional tests that need
a real gunicorn service.
"""
