"""Plain helpers the tests import by name: generated data, training runs, bundles.

Server processes come from `benchmarks.servers`, the one launcher the benchmarks use too.

Nothing here is a fixture; the fixtures are in the conftest files and build on these.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
