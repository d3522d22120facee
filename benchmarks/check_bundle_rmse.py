"""The former name of `python -m benchmarks.check_bundle`, kept while tests/training/test_evaluate.py
loads this file by path; to be deleted when the tests import `benchmarks.check_bundle`."""

from benchmarks.check_bundle import main

__all__ = ["main"]
