"""The bundle format: the encoders, the model file, and the reader's refusal of damaged bundles.

A damaged bundle is refused with a `BundleError` that names the file and how to make a new one.
Publishing bundles in a model folder is `test_bundle_store`'s subject.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app import bundle as bundle_module
from app.bundle import (
    FORMAT_VERSION,
    HOW_TO_MAKE_ONE,
    MANIFEST_FILE,
    MEMBER_ROLES,
    RANKING_MOVIE_LAYER,
    RANKING_SCALE_LAYER,
    RANKING_USER_LAYER,
    REQUIRED_FILES,
    BundleError,
    Catalogue,
    Encoders,
    RatingsByUser,
    load_bundle,
    member_layer_name,
    new_version,
    read_metadata,
    write_bundle_files,
    write_manifest,
)
from tests.support.bundles import drop_last_movies, reverse_users
from tests.support.data import ODD_MOVIE_IDS, ODD_USER_IDS

HOW_TO = "python -m training"
HALF_STARS = np.arange(1, 11) / 2


# --- the encoders ------------------------------------------------------------------------------


def test_encoders_survive_a_json_round_trip():
    encoders = Encoders(users=ODD_USER_IDS, movies=ODD_MOVIE_IDS, rating_min=0.5, rating_max=5.0)
    text = encoders.model_dump_json()
    assert Encoders.model_validate_json(text) == encoders
    document = json.loads(text)
    assert document == {"users": ODD_USER_IDS, "movies": ODD_MOVIE_IDS, "rating_min": 0.5, "rating_max": 5.0}


@pytest.mark.parametrize(
    "fields",
    [
        {"users": []},
        {"movies": []},
        {"users": [1, 2, 1]},
        {"movies": [3, 3]},
        {"rating_min": 5.0, "rating_max": 5.0},
        {"rating_min": 5.0, "rating_max": 0.5},
        {"users": [1.5]},
    ],
)
def test_encoders_reject_what_cannot_be_decoded(fields):
    document = {"users": [1, 2], "movies": [3, 4], "rating_min": 0.5, "rating_max": 5.0, **fields}
    with pytest.raises(ValidationError):
        Encoders(**document)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stars_and_scores_convert_both_ways(dtype):
    encoders = Encoders(users=[1], movies=[1], rating_min=0.5, rating_max=5.0)
    stars = HALF_STARS.astype(dtype)
    scores = encoders.to_scores(stars)
    assert scores[0] == 0 and scores[-1] == 1
    assert np.all(np.diff(scores) > 0)
    np.testing.assert_array_equal(encoders.to_stars(scores), stars)
    # The model's sigmoid range maps onto exactly the data set's star range.
    assert encoders.to_stars(np.array([0.0, 0.5, 1.0])).tolist() == [0.5, 2.75, 5.0]
    anything = np.random.default_rng(0).uniform(0.5, 5.0, 1000)
    np.testing.assert_allclose(encoders.to_stars(encoders.to_scores(anything)), anything, rtol=0, atol=1e-12)


# --- the model file ----------------------------------------------------------------------------


def test_the_model_is_keras_loadable_alone(tiny_loaded):
    model = keras.saving.load_model(tiny_loaded.path / "model.keras", safe_mode=True)
    assert model.input_shape == (None, 2)
    outputs = model.predict_on_batch(np.zeros((3, 2), np.int32))
    assert {name: value.shape for name, value in outputs.items()} == {"rating": (3, 1), "ranking": (3, 1)}


# --- load_bundle refuses damaged bundles ------------------------------------------------------


@pytest.fixture
def bundle_copy(tmp_path, tiny_bundle) -> Path:
    copy = tmp_path / tiny_bundle.name
    shutil.copytree(tiny_bundle, copy)
    return copy


def expect_refusal(path: Path, names: str, seal: bool = True) -> str:
    """Checks `load_bundle` refuses the bundle naming `names`. With `seal`, the manifest is written
    again first: the damage is then what training wrote, and the check past the manifest is tested."""
    if seal and (path / MANIFEST_FILE).exists():
        write_manifest(path)
    with pytest.raises(BundleError) as caught:
        load_bundle(path)
    message = str(caught.value)
    assert names in message, message
    assert HOW_TO in message, message
    return message


def test_a_missing_folder_is_refused(tmp_path):
    expect_refusal(tmp_path / "nowhere", "nowhere")


@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_a_missing_file_is_refused(bundle_copy, name):
    (bundle_copy / name).unlink()
    assert "is missing" in expect_refusal(bundle_copy, name)


@pytest.mark.parametrize("name", ["metadata.json", "encoders.json", "movies.json"])
@pytest.mark.parametrize("content", ["{not json", "", '{"users": "nope"}', "[]"])
def test_corrupt_json_is_refused(bundle_copy, name, content):
    (bundle_copy / name).write_text(content)
    expect_refusal(bundle_copy, name)


def test_a_newer_format_version_is_refused(bundle_copy):
    metadata = json.loads((bundle_copy / "metadata.json").read_text())
    metadata["format_version"] = FORMAT_VERSION + 1
    (bundle_copy / "metadata.json").write_text(json.dumps(metadata))
    assert "format_version" in expect_refusal(bundle_copy, "metadata.json")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_model_is_refused(bundle_copy, damage):
    path = bundle_copy / "model.keras"
    data = path.read_bytes()
    path.write_bytes(
        {"garbage": b"\x00not a keras file" * 100, "truncated": data[: len(data) // 2], "empty": b""}[damage]
    )
    expect_refusal(bundle_copy, "model.keras")


def test_a_model_smaller_than_the_encoders_is_refused(bundle_copy):
    """Encoders listing one user more than the model has rows: the probe of the last row fails."""
    encoders = json.loads((bundle_copy / "encoders.json").read_text())
    encoders["users"].append(max(encoders["users"]) + 1)
    (bundle_copy / "encoders.json").write_text(json.dumps(encoders))
    with np.load(bundle_copy / "ratings.npz") as stored:
        arrays = dict(stored)
    arrays["indptr"] = np.append(arrays["indptr"], arrays["indptr"][-1])
    np.savez(bundle_copy / "ratings.npz", **arrays)
    expect_refusal(bundle_copy, "model.keras")


def damage_ratings(path: Path, how: str) -> None:
    with np.load(path) as stored:
        arrays = dict(stored)
    if how == "short indptr":
        arrays["indptr"] = arrays["indptr"][:-1]
    elif how == "movie row out of range":
        arrays["movies"][0] = 10**6
    elif how == "movie row one past the last":
        with open(path.parent / "encoders.json") as encoders:
            arrays["movies"][0] = len(json.load(encoders)["movies"])
    elif how == "negative movie row":
        arrays["movies"][-1] = -1
    elif how == "counts disagree":
        arrays["ratings"] = arrays["ratings"][:-1]
    elif how == "decreasing indptr":
        arrays["indptr"][1] = arrays["indptr"][2] + 1
    elif how == "array missing":
        del arrays["indptr"]
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "how",
    [
        "short indptr",
        "movie row out of range",
        "movie row one past the last",
        "negative movie row",
        "counts disagree",
        "decreasing indptr",
        "array missing",
    ],
)
def test_inconsistent_ratings_are_refused(bundle_copy, how):
    damage_ratings(bundle_copy / "ratings.npz", how)
    expect_refusal(bundle_copy, "ratings.npz")


def test_unreadable_ratings_are_refused(bundle_copy):
    (bundle_copy / "ratings.npz").write_bytes(b"not an npz")
    expect_refusal(bundle_copy, "ratings.npz")


def test_a_catalogue_that_misses_movies_is_refused(bundle_copy):
    catalogue = json.loads((bundle_copy / "movies.json").read_text())
    catalogue["titles"].pop()
    catalogue["genres"].pop()
    (bundle_copy / "movies.json").write_text(json.dumps(catalogue))
    expect_refusal(bundle_copy, "movies.json")


def test_an_intact_copy_loads(bundle_copy, tiny_bundle):
    bundle = load_bundle(bundle_copy)
    assert bundle.version == tiny_bundle.name
    assert len(bundle.catalogue.titles) == len(bundle.encoders.movies)
    assert bundle.ratings.indptr[-1] == len(bundle.ratings.movies)


# --- round trips, for any content ------------------------------------------------------------

ids = st.lists(st.integers(-(2**53) + 1, 2**53 - 1), min_size=1, max_size=40, unique=True)


@given(users=ids, movies=ids, low=st.floats(-10, 10), span=st.floats(0.01, 100))
@settings(max_examples=100, deadline=None)
def test_encoders_round_trip_through_json_and_scores_through_stars(users, movies, low, span):
    encoders = Encoders(users=users, movies=movies, rating_min=low, rating_max=low + span)
    assert Encoders.model_validate_json(encoders.model_dump_json()) == encoders
    scores = np.linspace(0, 1, 11)
    np.testing.assert_allclose(encoders.to_scores(encoders.to_stars(scores)), scores, atol=1e-9)


@st.composite
def bundle_contents(draw, n_users: int, n_movies: int):
    """A catalogue and every user's ratings, of the tiny model's size but of any content."""
    text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
    titles = draw(st.lists(text, min_size=n_movies, max_size=n_movies))
    genres = draw(st.lists(st.lists(text, max_size=3), min_size=n_movies, max_size=n_movies))
    counts = draw(st.lists(st.integers(0, 5), min_size=n_users, max_size=n_users))
    movies = [
        draw(st.lists(st.integers(0, n_movies - 1), min_size=c, max_size=c, unique=True)) for c in counts
    ]
    stars = draw(st.lists(st.sampled_from(np.arange(1, 11) / 2), min_size=sum(counts), max_size=sum(counts)))
    users = np.repeat(np.arange(n_users), counts)
    ratings = RatingsByUser.from_pairs(
        users, np.array([m for ms in movies for m in ms], int), np.array(stars), n_users
    )
    return Catalogue(titles=titles, genres=genres), ratings


@pytest.fixture(scope="module")
def tiny_parts(tiny_loaded):
    return tiny_loaded, len(tiny_loaded.encoders.users), len(tiny_loaded.encoders.movies)


@given(data=st.data())
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_what_the_writer_writes_the_reader_reads_back(tiny_parts, tmp_path_factory, data):
    loaded, n_users, n_movies = tiny_parts
    catalogue, ratings = data.draw(bundle_contents(n_users, n_movies))
    folder = tmp_path_factory.mktemp("round-trip")
    metadata = loaded.metadata.model_copy(update={"version": folder.name})
    parts = {"model": loaded.model, "encoders": loaded.encoders, "metadata": metadata, "catalogue": catalogue}
    write_bundle_files(folder, **parts, ratings=ratings)
    write_manifest(folder)  # as publishing does: a format-3 bundle without one is refused
    again = load_bundle(folder)
    assert (again.encoders, again.catalogue, again.metadata) == (loaded.encoders, catalogue, metadata)
    for name in ("indptr", "movies", "ratings"):
        np.testing.assert_array_equal(getattr(again.ratings, name), getattr(ratings, name))
    for user in range(n_users):  # each movie with its own rating, not values and ids apart
        pairs = zip(*(part.tolist() for part in again.ratings.of(user)), strict=True)
        assert list(pairs) == list(zip(*(part.tolist() for part in ratings.of(user)), strict=True))


# --- encoders bound to the model ---------------------------------------------------------------


@pytest.mark.parametrize("seal", [True, False], ids=["manifest rewritten", "manifest as written"])
def test_encoders_listing_fewer_movies_than_the_model_are_refused(bundle_copy, seal):
    """By the manifest, or, if it was written over them, by the model's table sizes."""
    rows = len(json.loads((bundle_copy / "encoders.json").read_text())["movies"])
    drop_last_movies(bundle_copy, 100)
    message = expect_refusal(bundle_copy, "encoders.json", seal=seal)
    assert (f"has {rows} rows" in message) == seal, message


def test_encoders_in_another_order_than_the_models_are_refused(bundle_copy):
    reverse_users(bundle_copy)
    assert MANIFEST_FILE in expect_refusal(bundle_copy, "encoders.json", seal=False)


# --- the manifest ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*REQUIRED_FILES, "loss.png"])
@pytest.mark.parametrize("damage", ["one byte changed", "cut short", "emptied"])
def test_a_file_changed_after_the_manifest_is_refused_naming_it(bundle_copy, name, damage):
    path = bundle_copy / name
    data = bytearray(path.read_bytes())
    if damage == "one byte changed":
        data[len(data) // 2] ^= 1
    path.write_bytes({"one byte changed": data, "cut short": data[:-1], "emptied": b""}[damage])
    assert MANIFEST_FILE in expect_refusal(bundle_copy, name, seal=False)


def test_the_manifest_lists_every_file_and_is_required(bundle_copy):
    listed = json.loads((bundle_copy / MANIFEST_FILE).read_text())["files"]
    assert set(listed) == {*REQUIRED_FILES, "loss.png"}
    (bundle_copy / MANIFEST_FILE).unlink()
    assert "is missing" in expect_refusal(bundle_copy, MANIFEST_FILE)


@pytest.mark.parametrize("how", ["not json", "lists nothing", "lists a path outside", "lists a missing file"])
def test_a_corrupt_manifest_is_refused(bundle_copy, how):
    path = bundle_copy / MANIFEST_FILE
    files = json.loads(path.read_text())["files"]
    entry = {"bytes": 1, "sha256": "0" * 64}
    path.write_text(
        {
            "not json": "{not json",
            "lists nothing": '{"files": {}}',
            "lists a path outside": json.dumps({"files": {**files, "../x": entry}}),
            "lists a missing file": json.dumps({"files": {**files, "extra.bin": entry}}),
        }[how]
    )
    expect_refusal(bundle_copy, MANIFEST_FILE, seal=False)


def test_a_model_without_member_tables_is_refused(bundle_copy):
    import keras

    inputs = keras.Input((2,), dtype="int32", name="pairs")
    score = keras.layers.Dense(1, activation="sigmoid")(keras.ops.cast(inputs, "float32"))
    keras.Model(inputs, {"rating": score, "ranking": score}).save(bundle_copy / "model.keras")
    assert "member0_user_embedding" in expect_refusal(bundle_copy, "model.keras")


def test_a_manifest_that_leaves_out_a_required_file_is_refused_naming_it(bundle_copy: Path) -> None:
    """Every required file must be bound by the manifest: one left out is named in the refusal."""
    path = bundle_copy / MANIFEST_FILE
    document = json.loads(path.read_text())
    del document["files"]["encoders.json"]
    path.write_text(json.dumps(document))
    assert "does not list encoders.json" in expect_refusal(bundle_copy, MANIFEST_FILE, seal=False)


@pytest.mark.parametrize("listed", ["assets/extra.bin", ".hidden"], ids=["nested", "hidden"])
def test_a_manifest_listing_more_than_the_bundle_s_visible_files_is_refused(
    bundle_copy: Path, listed: str
) -> None:
    """The manifest covers the bundle folder's own visible files, as the writer lists them: a
    nested path or a hidden file (the writer's lock) is refused even when it exists and matches,
    so a manifest cannot have the reader hash, and vouch for, files the writer never wrote."""
    extra = bundle_copy / listed
    extra.parent.mkdir(exist_ok=True)
    extra.write_bytes(b"extra")
    path = bundle_copy / MANIFEST_FILE
    document = json.loads(path.read_text())
    document["files"][listed] = {"bytes": 5, "sha256": hashlib.sha256(b"extra").hexdigest()}
    path.write_text(json.dumps(document))
    assert repr(listed) in expect_refusal(bundle_copy, MANIFEST_FILE, seal=False)


def test_ratings_that_need_unpickling_to_load_are_refused(bundle_copy: Path) -> None:
    """Unpickling runs code the file carries: `ratings.npz` must hold plain numeric arrays, and an
    object array (which only a pickle can store) is refused, not loaded."""
    with np.load(bundle_copy / "ratings.npz") as stored:
        arrays = dict(stored)
    arrays["movies"] = arrays["movies"].astype(object)
    np.savez(bundle_copy / "ratings.npz", **arrays)
    assert "ratings.npz" in expect_refusal(bundle_copy, "ratings.npz")


def test_ratings_all_of_one_movie_are_accepted(bundle_copy: Path) -> None:
    """A data set whose every rating is of one movie (the smallest and largest row rated are the
    same) is consistent: its bundle loads."""
    with np.load(bundle_copy / "ratings.npz") as stored:
        arrays = dict(stored)
    arrays["movies"][:] = 0
    np.savez(bundle_copy / "ratings.npz", **arrays)
    write_manifest(bundle_copy)
    assert load_bundle(bundle_copy).ratings.movies.max() == 0


def _pair_model(outputs: int = 1, *, weight: float = 0.5, named: bool = True) -> keras.Model:
    """A small stand-in for a trained model: (N, 2) index pairs in, `outputs` columns out, every
    weight `weight` (NaN makes every score NaN)."""
    pairs = keras.Input((2,), dtype="int32")
    vectors = keras.layers.Flatten()(keras.layers.Embedding(8, 3)(pairs))
    scores = [keras.layers.Dense(outputs, name=f"dense{i}")(vectors) for i in range(2 if named else 1)]
    model = keras.Model(pairs, {"rating": scores[0], "ranking": scores[1]} if named else scores[0])
    for layer in model.layers:
        layer.set_weights([np.full_like(w, weight) for w in layer.get_weights()])
    return model


PROBE_ENCODERS = Encoders(users=[1, 2, 3], movies=[10, 20, 30, 40], rating_min=0.5, rating_max=5.0)


def test_the_model_probe_accepts_two_named_outputs_or_one_for_both() -> None:
    bundle_module._check_model(Path("m.keras"), _pair_model(), PROBE_ENCODERS)
    bundle_module._check_model(Path("m.keras"), _pair_model(named=False), PROBE_ENCODERS)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (lambda: _pair_model(weight=float("nan")), "output 'rating' is (2, 1), expected finite (N, 1)"),
        (lambda: _pair_model(outputs=2), "output 'rating' is (2, 2), expected finite (N, 1)"),
        (lambda: _pair_model(named=False, outputs=3), "output 'rating' is (2, 3), expected finite"),
        (lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]), "does not score [user,"),
    ],
    ids=["nan scores", "two columns", "one output of three columns", "wrong input"],
)
def test_the_model_probe_refuses_a_model_that_cannot_serve_saying_why(model, reason) -> None:
    with pytest.raises(BundleError) as refused:
        bundle_module._check_model(Path("m.keras"), model(), PROBE_ENCODERS)
    assert reason in str(refused.value) and "m.keras" in str(refused.value)


# --- what a refusal says -----------------------------------------------------------------------
# Whoever deploys a bundle reads the refusal: it names the file, what is wrong with it and how to
# make a good bundle. These tests compare whole messages, so a lost path or clause shows.


def test_a_missing_folder_or_file_is_refused_saying_which(tmp_path: Path, bundle_copy: Path) -> None:
    nowhere = tmp_path / "nowhere"
    assert expect_refusal(nowhere, "nowhere") == f"no bundle at {nowhere}: {HOW_TO_MAKE_ONE}"
    (bundle_copy / "ratings.npz").unlink()
    missing = bundle_copy / "ratings.npz"
    expected = f"{missing} is missing: the bundle is incomplete; {HOW_TO_MAKE_ONE}"
    assert expect_refusal(bundle_copy, "ratings.npz") == expected


def test_a_path_the_system_cannot_read_is_refused_with_the_system_s_reason(tmp_path: Path) -> None:
    """An OSError (here a name longer than the file system allows) is a refusal, not a crash."""
    unreadable = tmp_path / ("x" * 300)
    expected = f"{unreadable} cannot be read (File name too long); {HOW_TO_MAKE_ONE}"
    assert expect_refusal(unreadable, "x" * 300, seal=False) == expected


def test_a_format_this_server_does_not_read_is_refused_listing_those_it_does(bundle_copy: Path) -> None:
    metadata = json.loads((bundle_copy / "metadata.json").read_text())
    metadata["format_version"] = FORMAT_VERSION + 1
    (bundle_copy / "metadata.json").write_text(json.dumps(metadata))
    expected = (
        f"{bundle_copy / 'metadata.json'}: format_version {FORMAT_VERSION + 1}, this server reads 1, 2, 3; "
        f"{HOW_TO_MAKE_ONE}"
    )
    assert expect_refusal(bundle_copy, "metadata.json") == expected


def test_only_a_bundle_of_format_3_on_needs_a_manifest(bundle_copy: Path) -> None:
    """Formats 1 and 2 were written before manifests: without one they load, as they did."""
    (bundle_copy / MANIFEST_FILE).unlink()
    expected = f"{bundle_copy / MANIFEST_FILE} is missing: the bundle is incomplete; {HOW_TO_MAKE_ONE}"
    assert expect_refusal(bundle_copy, MANIFEST_FILE) == expected
    metadata = json.loads((bundle_copy / "metadata.json").read_text())
    metadata["format_version"] = 2
    (bundle_copy / "metadata.json").write_text(json.dumps(metadata))
    assert load_bundle(bundle_copy).metadata.format_version == 2


def test_a_catalogue_or_ratings_that_disagree_with_the_encoders_are_refused_saying_so(
    bundle_copy: Path,
) -> None:
    damage_ratings(bundle_copy / "ratings.npz", "short indptr")
    expected = f"{bundle_copy / 'ratings.npz'} does not match encoders.json; {HOW_TO_MAKE_ONE}"
    assert expect_refusal(bundle_copy, "ratings.npz") == expected
    catalogue = json.loads((bundle_copy / "movies.json").read_text())
    (bundle_copy / "movies.json").write_text(
        json.dumps({key: values[1:] for key, values in catalogue.items()})
    )
    expected = f"{bundle_copy / 'movies.json'}: does not list every movie in encoders.json; {HOW_TO_MAKE_ONE}"
    assert expect_refusal(bundle_copy, "movies.json") == expected


@pytest.mark.parametrize(
    ("name", "change", "reason"),
    [
        (
            "encoders.json",
            {"users": [1.5]},
            "users.0: Input should be a valid integer, got a number with a fractional part",
        ),
        ("encoders.json", {"users": []}, "document: Value error, users and movies must not be empty"),
        (
            "metadata.json",
            {"format_version": "three"},
            "format_version: Input should be a valid integer, unable to parse string as an integer",
        ),
    ],
    ids=["a field's item", "the whole document", "a field"],
)
def test_a_document_that_does_not_validate_is_refused_naming_the_field(
    bundle_copy: Path, name: str, change: dict, reason: str
) -> None:
    """The first validation error, located by its dotted path (or `document` when the error is
    the whole document's), is the reason given."""
    document = json.loads((bundle_copy / name).read_text())
    (bundle_copy / name).write_text(json.dumps({**document, **change}))
    expected = f"{bundle_copy / name} is unreadable or corrupt ({reason}); {HOW_TO_MAKE_ONE}"
    assert expect_refusal(bundle_copy, name) == expected


def test_a_manifest_entry_that_does_not_validate_is_refused_naming_its_path(bundle_copy: Path) -> None:
    path = bundle_copy / MANIFEST_FILE
    document = json.loads(path.read_text())
    document["files"]["model.keras"]["sha256"] = "not a digest"
    path.write_text(json.dumps(document))
    reason = "files.model.keras.sha256: String should match pattern '^[0-9a-f]{64}$'"
    expected = f"{path} is unreadable or corrupt ({reason}); {HOW_TO_MAKE_ONE}"
    assert expect_refusal(bundle_copy, MANIFEST_FILE, seal=False) == expected


def test_metadata_alone_reads_cheaply_and_a_missing_file_is_named(tiny_bundle: Path, tmp_path: Path) -> None:
    assert read_metadata(tiny_bundle).version == tiny_bundle.name
    missing = tmp_path / "metadata.json"
    with pytest.raises(BundleError) as refused:
        read_metadata(tmp_path)
    reason = f"[Errno 2] No such file or directory: '{missing}'"
    assert str(refused.value) == f"{missing} is unreadable or corrupt ({reason}); {HOW_TO_MAKE_ONE}"


def test_a_model_that_would_run_code_from_the_file_is_not_loaded(bundle_copy: Path) -> None:
    """Keras's safe mode: a Lambda layer is Python bytecode in the file, which loading would run."""
    pairs = keras.Input((2,), dtype="int32")
    score = keras.layers.Lambda(lambda x: keras.ops.cast(x[:, :1], "float32"), output_shape=(1,))(pairs)
    keras.Model(pairs, {"rating": score, "ranking": score}).save(bundle_copy / "model.keras")
    message = expect_refusal(bundle_copy, "model.keras")
    assert message.startswith(f"{bundle_copy / 'model.keras'} cannot be loaded (") and "Lambda" in message
    assert message.endswith(f"); {HOW_TO_MAKE_ONE}")


# --- the model's tables against the encoders ---------------------------------------------------

TABLE_DIM = 2  # neither PROBE_ENCODERS' 3 users nor its 4 movies: a table's width is not its rows


def table_rows(members: int, *, ranking: bool = True) -> dict[str, int]:
    """The rows each table of a bundle model has for PROBE_ENCODERS, by layer name."""
    users, movies = len(PROBE_ENCODERS.users), len(PROBE_ENCODERS.movies)
    rows = {
        member_layer_name(member, role): users if role.startswith("user") else movies
        for member in range(members)
        for role in MEMBER_ROLES
    }
    if ranking:
        rows.update({RANKING_USER_LAYER: users, RANKING_MOVIE_LAYER: movies, RANKING_SCALE_LAYER: movies})
    return rows


def table_model(rows: dict[str, int], not_tables: tuple[str, ...] = ()) -> keras.Model:
    """A model with an embedding table of `rows[name]` rows per layer name, and a dense layer (no
    table) for each of `not_tables`: what `_check_tables` reads, which never calls the model."""
    ids = keras.Input((1,), dtype="int32")
    outputs = [keras.layers.Embedding(n, TABLE_DIM, name=name)(ids) for name, n in rows.items()]
    floats = keras.ops.cast(ids, "float32")
    outputs += [keras.layers.Dense(1, name=name)(floats) for name in not_tables]
    return keras.Model(ids, outputs)


def check_tables(model: keras.Model) -> None:
    bundle_module._check_tables(Path("b"), model, PROBE_ENCODERS)


@pytest.mark.parametrize("members", [1, 2])
@pytest.mark.parametrize("ranking", [True, False], ids=["ranking tables", "no ranking tables (format 1)"])
def test_tables_of_the_encoders_size_pass(members: int, ranking: bool) -> None:
    check_tables(table_model(table_rows(members, ranking=ranking)))


@pytest.mark.parametrize(
    "name",
    [
        *(member_layer_name(member, role) for member in (0, 1) for role in MEMBER_ROLES),
        RANKING_USER_LAYER,
        RANKING_MOVIE_LAYER,
        RANKING_SCALE_LAYER,
    ],
)
def test_a_table_of_another_size_is_refused_naming_the_layer_and_both_sizes(name: str) -> None:
    """Any member's table, or a ranking one, one row longer than the encoders list: refused."""
    rows = table_rows(2)
    kind = "users" if "_user_" in name else "movies"
    rows[name] += 1
    with pytest.raises(BundleError) as refused:
        check_tables(table_model(rows))
    expected = (
        f"{Path('b/encoders.json')} does not match {Path('b/model.keras')}: it lists "
        f"{rows[name] - 1} {kind}, the model's layer {name!r} has {rows[name]} rows; {HOW_TO_MAKE_ONE}"
    )
    assert str(refused.value) == expected


@pytest.mark.parametrize("layer", ["missing", "not a table"])
def test_a_member_s_table_missing_is_refused_naming_it(layer: str) -> None:
    rows = table_rows(2)
    del rows["member1_movie_bias"]
    not_tables = ("member1_movie_bias",) if layer == "not a table" else ()
    with pytest.raises(BundleError) as refused:
        check_tables(table_model(rows, not_tables))
    expected = (
        f"{Path('b/encoders.json')} does not match {Path('b/model.keras')}: it lists 4 movies, "
        f"the model's layer 'member1_movie_bias' has no such table; {HOW_TO_MAKE_ONE}"
    )
    assert str(refused.value) == expected


def test_a_model_without_member_tables_is_refused_saying_it_cannot_be_scored() -> None:
    rows = {name: n for name, n in table_rows(1).items() if name.startswith("ranking")}
    with pytest.raises(BundleError) as refused:
        check_tables(table_model(rows))
    expected = (
        f"{Path('b/model.keras')} has no layer named 'member0_user_embedding': not a model this server "
        f"can score; {HOW_TO_MAKE_ONE}"
    )
    assert str(refused.value) == expected


# --- the ratings' layout, version names and the JSON files -------------------------------------


def test_ratings_grouped_by_user_keep_each_user_s_order_in_compact_arrays() -> None:
    """Each user's ratings in the order given (the sort is stable), every user row present (the
    last ones without ratings too), in the types the bundle stores: int32 movie rows and float32
    stars, half the memory of numpy's defaults at ml-25m's 25 million ratings."""
    rng = np.random.default_rng(3)
    users = rng.integers(0, 5, 500)
    movies, stars = rng.permutation(500), rng.integers(1, 11, 500) / 2
    grouped = RatingsByUser.from_pairs(users, movies, stars, n_users=7)
    assert (grouped.indptr.dtype, grouped.movies.dtype, grouped.ratings.dtype) == (
        np.int64,
        np.int32,
        np.float32,
    )
    assert grouped.indptr.tolist() == [0, *np.cumsum(np.bincount(users, minlength=7)).tolist()]
    for user in range(7):
        rows, given = grouped.of(user)
        assert rows.tolist() == movies[users == user].tolist()
        assert given.tolist() == stars[users == user].tolist()


@pytest.mark.parametrize("who", ["the first user", "everyone"])
def test_ratings_where_a_user_or_everyone_has_none_load(bundle_copy: Path, who: str) -> None:
    """A user with no rating stored (an empty row) is consistent, as is a bundle with none."""
    with np.load(bundle_copy / "ratings.npz") as stored:
        arrays = dict(stored)
    dropped = int(arrays["indptr"][1]) if who == "the first user" else len(arrays["movies"])
    arrays["indptr"] = np.maximum(arrays["indptr"] - dropped, 0)
    arrays["movies"], arrays["ratings"] = arrays["movies"][dropped:], arrays["ratings"][dropped:]
    np.savez(bundle_copy / "ratings.npz", **arrays)
    write_manifest(bundle_copy)
    ratings = load_bundle(bundle_copy).ratings
    assert len(ratings.of(0)[0]) == 0 and len(ratings.movies) == len(arrays["movies"])


def test_a_version_name_is_the_utc_creation_time_and_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """UTC, not the local clock: names sort by creation time on any machine, in any season."""
    moment = datetime(2026, 11, 29, 5, 51, 9, 519036, tzinfo=UTC)
    assert new_version(moment) == f"20261129T055109519036Z-{os.getpid()}"
    monkeypatch.setenv("TZ", "AHEAD-14")  # a local clock 14 hours ahead of UTC
    time.tzset()
    try:
        before, name, after = datetime.now(UTC), new_version(), datetime.now(UTC)
    finally:
        monkeypatch.undo()
        time.tzset()
    created = datetime.strptime(name.split("-")[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    assert before <= created <= after


def test_the_json_files_are_utf_8_text_whatever_the_locale(
    tmp_path: Path, tiny_loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Titles are written as they are, in UTF-8 (not as \\u escapes), even by a training process
    whose locale is not UTF-8: simulated by making Latin-1 Python's default for text files."""
    monkeypatch.setattr(io, "text_encoding", lambda encoding, stacklevel=2: encoding or "latin-1")
    titles = ["Amélie (2001)", "千と千尋の神隠し (2001)"]
    parts = {"model": tiny_loaded.model, "encoders": tiny_loaded.encoders, "metadata": tiny_loaded.metadata}
    catalogue = Catalogue(titles=titles, genres=[["Comedy"], ["Animation"]])
    write_bundle_files(tmp_path, **parts, catalogue=catalogue, ratings=tiny_loaded.ratings)
    text = (tmp_path / "movies.json").read_bytes().decode("utf-8")
    assert all(title in text for title in titles), text


def test_a_model_whose_scores_are_not_finite_is_refused_naming_its_file(bundle_copy: Path) -> None:
    """Tables of the right sizes but NaN in one: the probe's refusal names the bundle's model."""
    model = keras.saving.load_model(bundle_copy / "model.keras", safe_mode=True)
    layer = model.get_layer("member0_movie_bias")
    layer.set_weights([np.full_like(weights, np.nan) for weights in layer.get_weights()])
    model.save(bundle_copy / "model.keras")
    message = expect_refusal(bundle_copy, "model.keras")
    assert message.startswith(f"{bundle_copy / 'model.keras'}: output 'rating' is (2, 1), expected finite"), (
        message
    )
