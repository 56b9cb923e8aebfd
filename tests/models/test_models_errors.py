"""The store's errors survive Celery's JSON exception round trip (class + args)."""
from __future__ import annotations

import json

import pytest

from omnimind.errors import OmniMindError
from omnimind.models.errors import CorruptModel, IncompatibleWeights, StaleFence, UnknownVersion
from omnimind.observability.metrics import MODEL_SWAP_REJECTION_REASONS


@pytest.mark.parametrize(
    "error",
    [
        StaleFence("model:default", (3, 7), (4, 0)),
        StaleFence("model:default", None, (4, 0)),
        UnknownVersion("default", 9, "not published or no longer retained"),
        UnknownVersion("default", None),
        CorruptModel("default", 5, "sha256 mismatch"),
        CorruptModel("default", 5, "not a safetensors blob", "unreadable"),
        IncompatibleWeights("missing keys: bias"),
    ],
)
def test_json_round_trip_and_reason_labels(error):
    rebuilt = type(error)(*json.loads(json.dumps(error.args)))
    assert str(rebuilt) == str(error) and rebuilt.reason == error.reason
    assert isinstance(rebuilt, OmniMindError)
    assert error.reason in MODEL_SWAP_REJECTION_REASONS
