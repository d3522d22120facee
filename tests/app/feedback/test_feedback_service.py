"""The feedback store on the `Service`: opened (and migrated) in `start`, closed in `stop`."""

from __future__ import annotations

import pytest

from app.metrics import create_metrics
from app.service import Service
from tests.support.feedback import feedback_settings


@pytest.mark.anyio
async def test_the_service_opens_the_store_in_start_and_closes_it_in_stop(
    tiny_model_dir, served_tiny_bundle, feedback_url, monkeypatch
):
    monkeypatch.setattr("app.service.freeze_heap", lambda: None)
    metrics = create_metrics()
    service = Service(feedback_settings(tiny_model_dir, feedback_url), metrics)
    assert not service.feedback.available, "nothing is reached before start"
    await service.start(served_tiny_bundle)
    try:
        assert service.feedback.available
        assert metrics.registry.get_sample_value("feedback_database_up") == 1.0
        movie = served_tiny_bundle.encoders.movies[0]
        await service.feedback.put(1, movie, 4.0)
        (stored,) = (await service.feedback.ratings_of([1]))[1]
        assert (stored.movie_id, stored.rating) == (movie, 4.0)
    finally:
        await service.stop()
    assert service.feedback._watcher is not None and service.feedback._watcher.done()
