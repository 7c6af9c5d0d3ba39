"""Runnable examples; each is imported and exercised by tests/test_examples.py."""
