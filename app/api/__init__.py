"""The HTTP layer: shared dependencies, one routes module per resource, and error handlers."""
