"""Reading MovieLens data: good folders and archives, and every bad input failing cleanly.

A bad input must stop `python -m training` with a non-zero status and a one-line reason that
names the problem, before anything in the model folder changes.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.servers import free_port
from tests.support import REPO
from tests.support.bundles import sha256_of, snapshot
from training.cli import main
from training.data import DataError, load, resolve_source

TINY = ["--epochs", "1", "--members", "1", "--embedding-dim", "8", "--verbose", "0"]

MOVIES = (
    'movieId,title,genres\n1,Toy Story (1995),Animation|Children\n2,"Heat, The (1995)",Action\n5,X,Drama\n'
)
RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964981247\n20,1,5.0,964982224\n"


def folder(root: Path, ratings: str | None = RATINGS, movies: str | None = MOVIES) -> Path:
    """A data folder with the given file contents; None leaves a file out."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("ratings.csv", ratings), ("movies.csv", movies)):
        if text is not None:
            (root / name).write_text(text)
    return root


def archive(path: Path, members: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, text in members.items():
            zipped.writestr(name, text)
    return path


def truncated_archive(path: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("ml/ratings.csv", RATINGS * 50)
        zipped.writestr("ml/movies.csv", MOVIES)
    return _write(path, buffer.getvalue()[: len(buffer.getvalue()) // 2])


def replace_row(text: str, row: str) -> str:
    """RATINGS with its second data row replaced."""
    lines = text.splitlines()
    lines[2] = row
    return "\n".join(lines) + "\n"


# (case, how to make the --data-dir argument under a tmp folder, fragments the reason must hold)
BAD_INPUTS = [
    (
        "ratings lack a column",
        lambda t: folder(t, "userId,movieId,timestamp\n1,1,9\n"),
        ["ratings.csv", "rating"],
    ),
    (
        "movies lack a column",
        lambda t: folder(t, movies="movieId,genres\n1,Drama\n"),
        ["movies.csv", "title"],
    ),
    ("non-numeric rating", lambda t: folder(t, replace_row(RATINGS, "1,2,four,9")), ["ratings.csv", "four"]),
    (
        "rating 7",
        lambda t: folder(t, replace_row(RATINGS, "1,2,7,9")),
        ["ratings.csv", "rating 7", "0.5 to 5"],
    ),
    (
        "rating -1",
        lambda t: folder(t, replace_row(RATINGS, "1,2,-1,9")),
        ["ratings.csv", "rating -1", "row 2"],
    ),
    ("rating 0", lambda t: folder(t, replace_row(RATINGS, "1,2,0,9")), ["ratings.csv", "rating 0"]),
    ("missing rating", lambda t: folder(t, replace_row(RATINGS, "1,2,,9")), ["ratings.csv", "rating nan"]),
    ("userId abc", lambda t: folder(t, replace_row(RATINGS, "abc,2,3.5,9")), ["ratings.csv", "abc"]),
    ("userId 1.5", lambda t: folder(t, replace_row(RATINGS, "1.5,2,3.5,9")), ["userId 1.5", "integer id"]),
    ("movieId 2.5", lambda t: folder(t, replace_row(RATINGS, "1,2.5,3.5,9")), ["movieId 2.5", "integer id"]),
    ("missing userId", lambda t: folder(t, replace_row(RATINGS, ",2,3.5,9")), ["ratings.csv", "userId"]),
    ("movies movieId abc", lambda t: folder(t, movies=MOVIES + "abc,Y,Drama\n"), ["movies.csv", "abc"]),
    ("empty ratings", lambda t: folder(t, ""), ["ratings.csv is empty"]),
    (
        "header-only ratings",
        lambda t: folder(t, "userId,movieId,rating,timestamp\n"),
        ["ratings.csv", "no rows"],
    ),
    ("empty movies", lambda t: folder(t, movies=""), ["movies.csv is empty"]),
    ("header-only movies", lambda t: folder(t, movies="movieId,title,genres\n"), ["movies.csv", "no rows"]),
    ("no ratings.csv", lambda t: folder(t, None), ["ratings.csv is missing"]),
    ("no movies.csv", lambda t: folder(t, movies=None), ["movies.csv is missing"]),
    ("unterminated quote", lambda t: folder(t, RATINGS + '3,1,"4.0,9\n'), ["ratings.csv", "not valid"]),
    (
        "rated movie not in catalogue",
        lambda t: folder(t, RATINGS + "3,77,4.0,9\n"),
        ["absent from movies.csv", "77"],
    ),
    (
        "movie listed twice",
        lambda t: folder(t, movies=MOVIES + "2,Heat again,Action\n"),
        ["movieId 2", "twice"],
    ),
    (
        "every rating equal",
        lambda t: folder(t, "userId,movieId,rating\n1,1,4\n2,1,4\n"),
        ["every rating is 4"],
    ),
    (
        "zip of garbage",
        lambda t: _write(t / "ml.zip", b"PK\x03\x04 not really a zip"),
        ["ml.zip", "not a readable zip"],
    ),
    ("truncated zip", lambda t: truncated_archive(t / "ml.zip"), ["ml.zip", "not a readable zip"]),
    (
        "zip without ratings.csv",
        lambda t: archive(t / "ml.zip", {"ml/movies.csv": MOVIES}),
        ["no ratings.csv"],
    ),
    (
        "zip without movies.csv",
        lambda t: archive(t / "ml.zip", {"ml/ratings.csv": RATINGS}),
        ["no movies.csv"],
    ),
    (
        "zip with a bad member",
        lambda t: archive(t / "ml.zip", {"ratings.csv": "", "movies.csv": MOVIES}),
        ["empty"],
    ),
    ("a csv file as --data-dir", lambda t: folder(t) / "ratings.csv", ["ratings.csv", "not a readable zip"]),
    ("nonexistent --data-dir", lambda t: t / "no" / "such" / "folder", ["folder", "does not exist"]),
]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("make", "fragments"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_fails_in_one_line_and_leaves_current_alone(
    tmp_path, model_dir_copy, capsys, make, fragments
):
    data = make(tmp_path / "data")
    before = snapshot(model_dir_copy)

    status = main(["--data-dir", str(data), "--model-dir", str(model_dir_copy), *TINY])

    err = capsys.readouterr().err
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("training failed: "), err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert snapshot(model_dir_copy) == before


# Its own 120 s limit on the process fails first, saying that training hung without network.
@pytest.mark.timeout(300)
def test_without_data_or_network_the_download_fails_fast_telling_to_pass_data_dir(tmp_path, model_dir_copy):
    """A real process: exit status 1 and a one-line reason on stderr.

    The proxy is a closed local port, so this never downloads even on a machine with network.
    """
    before = snapshot(model_dir_copy)
    proxy = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if k not in ("MOVIELENS_DIR", "NO_PROXY", "no_proxy")}
    env.update(
        MOVIELENS_CACHE_DIR=str(tmp_path / "cache"),
        HTTPS_PROXY=proxy,
        https_proxy=proxy,
        HTTP_PROXY=proxy,
        http_proxy=proxy,
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    started = time.monotonic()
    try:
        finished = subprocess.run(
            [sys.executable, "-m", "training", "--model-dir", str(model_dir_copy), *TINY],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("without network, `python -m training` hung instead of failing fast")
    assert time.monotonic() - started < 60
    assert finished.returncode == 1, finished.stderr
    reasons = [line for line in finished.stderr.splitlines() if line.startswith("training failed")]
    assert len(reasons) == 1 and finished.stderr.strip().endswith(reasons[0]), finished.stderr
    assert "could not download" in reasons[0] and "--data-dir" in reasons[0]
    assert snapshot(model_dir_copy) == before
    assert not any((tmp_path / "cache").glob("*.zip"))


def test_a_folder_and_a_zip_of_it_read_the_same(tmp_path):
    data = folder(tmp_path / "ml-small")
    nested = archive(
        tmp_path / "nested.zip", {"ml-small/ratings.csv": RATINGS, "ml-small/movies.csv": MOVIES}
    )
    flat = archive(tmp_path / "flat.zip", {"ratings.csv": RATINGS, "movies.csv": MOVIES})
    from_folder = load(data)
    assert from_folder.ratings["userId"].tolist() == [1, 1, 20]
    assert from_folder.ratings["movieId"].tolist() == [1, 2, 1]
    assert from_folder.ratings["rating"].tolist() == [4.0, 3.5, 5.0]
    assert from_folder.movies.loc[2, "title"] == "Heat, The (1995)"
    assert from_folder.source == "ml-small"
    expected = hashlib.sha256((data / "ratings.csv").read_bytes() + (data / "movies.csv").read_bytes())
    assert from_folder.sha256 == expected.hexdigest()
    for zipped in (nested, flat):
        from_zip = load(zipped)
        pd.testing.assert_frame_equal(from_zip.ratings, from_folder.ratings)
        pd.testing.assert_frame_equal(from_zip.movies, from_folder.movies)
        assert from_zip.source == zipped.name
        assert from_zip.sha256 == sha256_of(zipped)


def test_extra_fields_on_the_first_row_do_not_shift_columns(tmp_path):
    """pandas would take a first row longer than the header as 'index + columns' and shift
    every value left: user 1, movie 1, 4 stars must not become movie 4 with 5 stars."""
    movies = "movieId,title,genres\n" + "".join(f"{m},M{m},Drama\n" for m in range(1, 6))
    data = load(folder(tmp_path, "userId,movieId,rating\n1,1,4.0,5\n2,3,2.5\n", movies))
    assert data.ratings.to_dict("list") == {"userId": [1, 2], "movieId": [1, 3], "rating": [4.0, 2.5]}


def test_genres_and_titles_keep_their_text(tmp_path):
    movies = 'movieId,title,genres\n1,"Sch, ""Quote"" (1990)",(no genres listed)\n2,,Drama|War\n'
    data = load(folder(tmp_path, "userId,movieId,rating\n1,1,4\n1,2,3\n", movies))
    assert data.movies.loc[1, "title"] == 'Sch, "Quote" (1990)'
    assert data.movies.loc[2, "title"] == ""
    assert data.movies["genres"].tolist() == ["(no genres listed)", "Drama|War"]


def test_movielens_dir_is_the_default_source_and_the_flag_wins(tmp_path, monkeypatch):
    first, second = folder(tmp_path / "a"), folder(tmp_path / "b")
    monkeypatch.setenv("MOVIELENS_DIR", str(first))
    assert resolve_source(None) == first
    assert resolve_source(str(second)) == second
    monkeypatch.setenv("MOVIELENS_DIR", str(tmp_path / "gone"))
    with pytest.raises(DataError, match="does not exist"):
        resolve_source(None)


@pytest.fixture
def served_file(tmp_path):
    """A local HTTP server handing out one file; yields (url, its bytes, a request counter)."""
    import http.server
    import threading

    payload = b"PK\x05\x06" + bytes(18)  # an empty zip archive
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/ml-latest-small.zip", payload, hits
    finally:
        server.shutdown()


def test_the_download_is_refused_when_its_checksum_differs_and_kept_once_it_matches(
    tmp_path, monkeypatch, served_file
):
    from training import data

    url, payload, hits = served_file
    monkeypatch.setattr(data, "MOVIELENS_URL", url)
    monkeypatch.setattr(data, "MOVIELENS_SHA256", "0" * 64)
    with pytest.raises(data.DataError, match="could not download"):
        data.download(tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.zip")), "a file that fails its checksum is not kept"
    monkeypatch.setattr(data, "MOVIELENS_SHA256", hashlib.sha256(payload).hexdigest())
    path = data.download(tmp_path / "cache")
    assert path.read_bytes() == payload
    calls = len(hits)
    assert data.download(tmp_path / "cache") == path and len(hits) == calls, "the cached copy is reused"
