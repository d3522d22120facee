"""The real server under a grid of settings, measured with the load benchmark's pieces.

    python -m benchmarks.sweep --model-dir DIR [--grid 'BATCH_WINDOW_MS=0,1,2,5;...'] [--repeat 3]

What it measures and reports: benchmarks/README.md.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict

from benchmarks import log, report, save
from benchmarks.load import arguments, median, parse_env, session

DEFAULT_GRID = "BATCH_WINDOW_MS=0,1,2,5;BATCH_MAX_USERS=16,32,64,128;COMPUTE_THREADS=1,2"


def settings_grid(grid: str, combos: list[str]) -> list[dict[str, str]]:
    """Defaults first, then each value of each setting on its own (defaults skipped), then the combos."""
    from pydantic import TypeAdapter

    from app.settings import Settings

    configs: list[dict[str, str]] = [{}]
    for part in filter(str.strip, grid.split(";")):
        ((key, values),) = parse_env([part]).items()
        if (field := Settings.model_fields.get(key.lower())) is None:
            raise SystemExit(f"{key} is not a server setting (see app/settings.py)")
        read = TypeAdapter(field.annotation).validate_python  # as the server would read the value
        configs += [{key: value} for value in values.split(",") if read(value) != field.default]
    return configs + [parse_env(combo.split(",")) for combo in combos]


def main(argv: list[str] | None = None) -> int:
    parser = arguments("sweep", __doc__, [32, 128])
    parser.add_argument("--grid", default=DEFAULT_GRID, help=f"KEY=V1,V2;KEY=... (default {DEFAULT_GRID})")
    parser.add_argument("--combo", action="append", default=[], help="a set of settings such as A=1,B=2")
    args = parser.parse_args(argv)
    configs = settings_grid(args.grid, args.combo)
    plan = [("recommendations", connections) for connections in sorted(args.connections)] + [("predict", 32)]
    floors, samples, failures = [], {}, {}
    with session(args) as (bench, document):
        for number in range(1, args.repeat + 1):
            floors.append(bench.measure("floor", [("recommendations", 32)], {}))
            for config in configs:
                label = " ".join(f"{k}={v}" for k, v in config.items()) or "defaults"
                log(f"=== sweep round {number}/{args.repeat}: {label}")
                try:
                    samples.setdefault(label, []).append(bench.measure("real", plan, {**args.env, **config}))
                except RuntimeError as error:  # one broken setting does not end the sweep
                    log(f"=== {label} failed: {error}")
                    failures[label] = str(error)
                time.sleep(1)
    floor, results = median(floors), {label: median(rounds) for label, rounds in samples.items()}
    lines = [f"Real server under each setting ({args.duration:g} s per run):", report.runs_table(results)]
    lines += ["", report.servers_table(results), ""]
    for label, result in results.items():
        ratio = next((r.vs_floor for r in report.ratios({"real": result, "floor": floor}) if r.vs_floor), "-")
        met = [t.met for t in report.targets(result, floor)]
        lines.append(f"{label}: recommendations @32 / floor {ratio}, targets met {sum(met)}/{len(met)}")
    lines += [f"{label}: failed: {error[:200]}" for label, error in failures.items()]
    print("\n".join(lines))
    document |= {"floor": asdict(floor), "by_settings": {k: asdict(v) for k, v in results.items()}}
    print(f"saved: {save('sweep', args, document | {'failures': failures}, bench.stamp)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
