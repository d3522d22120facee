"""Tests of the `app` package, one module per module of it."""
