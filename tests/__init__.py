"""The test suite, laid out like the code: tests/app, tests/training, tests/deployment.

A package, so that `tests.app` and `tests.training` are imported under those names and never
shadow the `app` and `training` packages they test. Shared helpers are plain modules in
`tests.support`; fixtures are in the conftest files.
"""
