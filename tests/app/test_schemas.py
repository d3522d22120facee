"""The response and request schemas, as the OpenAPI document publishes them."""

from __future__ import annotations


def test_every_schema_field_has_a_description_and_an_example(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    ours = {name: s for name, s in schemas.items() if "ValidationError" not in name}
    assert {"Recommendations", "Predictions", "PredictBody", "Movie"} <= set(ours)
    for name, schema in ours.items():
        for field, spec in schema.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"
            if name != "Metadata" and "$ref" not in str(spec) and spec.get("type") != "array":
                assert "examples" in spec or "example" in spec, f"{name}.{field} has no example"
