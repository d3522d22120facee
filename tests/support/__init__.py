"""Plain helpers the tests import by name: generated data, training runs, bundles, servers.

Nothing here is a fixture; the fixtures are in the conftest files and build on these.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
