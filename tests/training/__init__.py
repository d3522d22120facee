"""Tests of the `training` package, one module per module of it."""
