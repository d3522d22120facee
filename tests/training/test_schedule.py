"""`python -m training --every PERIOD`: the schedule, failed runs, and SIGTERM."""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.data import write_movielens
from tests.support.training import train
from training.schedule import next_start, parse_period, run_every

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("6h", 21600), ("1d", 86400), ("1.5h", 5400), (" 2s ", 2)],
)
def test_periods_take_s_m_h_d(text, seconds):
    assert parse_period(text) == seconds


@pytest.mark.parametrize("text", ["6", "h", "0h", "-1h", "6w", "6 h", "1e3s", ""])
def test_other_periods_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="30s, 15m, 6h or 1d"):
        parse_period(text)


def test_runs_keep_to_the_grid_of_the_first_start():
    assert next_start(100, 60, 130) == 160  # a short run: one period after the last start
    assert next_start(100, 60, 160) == 160
    assert next_start(100, 60, 161) == 220  # a run longer than the period: the next grid point
    assert next_start(100, 60, 100) == 160  # never twice at the same time


def test_a_failed_run_is_one_line_and_the_next_period_retries_until_sigterm(capsys):
    now = [0.0]
    outcomes = iter(["training failed: ratings.csv is empty", "bundle written to v2", "bundle written to v3"])
    naps: list[float] = []

    def run_once() -> str:
        now[0] += 10  # each run takes 10 s
        return next(outcomes)

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        now[0] += seconds
        if len(naps) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted by the handler at once

    previous = signal.getsignal(signal.SIGTERM)
    assert run_every(60, run_once, clock=lambda: now[0], sleep=sleep) == 0
    assert signal.getsignal(signal.SIGTERM) is previous
    assert naps == [50, 50, 50]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4, lines
    assert "training failed: ratings.csv is empty; next run at" in lines[0]
    assert "bundle written to v2; next run at" in lines[1]
    assert "stopped by SIGTERM" in lines[3]


def test_every_and_if_missing_do_not_go_together(tmp_path):
    with pytest.raises(SystemExit) as exited:
        train(tmp_path, tmp_path, "--every", "1h", "--if-missing")
    assert exited.value.code == 2


def test_the_scheduled_command_retrains_survives_a_failed_run_and_stops_on_sigterm(tmp_path, tiny_ratings):
    data = write_movielens(tmp_path / "data", tiny_ratings)
    models = tmp_path / "models"
    command = [sys.executable, "-m", "training", "--every", "2s", "--data-dir", str(data)]
    command += ["--model-dir", str(models), "--members", "1", "--epochs", "1", "--embedding-dim", "4"]
    command += ["--verbose", "0", "--no-feedback", "--evaluation-users", "10"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()

    def line_with(text: str) -> str:
        while text not in (line := lines.get(timeout=90)):
            pass
        return line

    try:
        assert "next run at" in line_with("bundle written to")
        published = os.readlink(models / "current")
        (data / "ratings.csv").write_text("userId,movieId,rating\n")  # the next runs fail
        failure = line_with("training failed:")
        assert "ratings.csv has a header but no rows; next run at" in failure
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        line_with("stopped by SIGTERM")
    finally:
        if process.poll() is None:
            process.kill()
    assert os.readlink(models / "current") == published, "a failed run must not touch the published bundle"
