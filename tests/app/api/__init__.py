"""Tests of the HTTP routes, one module per module of `app/api/routes`."""
