"""Benchmarks for asgi_auth (``python -m benchmarks.verify``)."""
