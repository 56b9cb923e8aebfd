"""Named inputs: token-sequence ranges and the model they feed (pure, no I/O)."""
import json

import pytest

from omnimind.config import Settings
from omnimind.errors import ConfigError, InvalidInput
from omnimind.models.factory import build_model
from omnimind.signature import Signature


def _tokens(**extra):
    return {"inputs": [{"name": "tokens", "dtype": "int64", "shape": [-1], "max_len": 4, **extra}]}


@pytest.mark.parametrize("token", [10**20, -1, 10])
def test_a_token_id_outside_the_vocabulary_is_a_typed_refusal(token):
    signature = Signature.from_json(_tokens(vocab=10))
    with pytest.raises(InvalidInput) as refused:
        signature.encode([[1, token]], max_batch=8)
    assert refused.value.reason == "out_of_range"


def test_a_sequence_signature_needs_its_vocabulary_and_a_pad_inside_it():
    with pytest.raises(ValueError, match="needs vocab"):
        Signature.from_json(_tokens())
    with pytest.raises(ValueError, match="pad 10"):
        Signature.from_json(_tokens(vocab=10, pad=10))


def test_a_vocabulary_larger_than_the_models_embedding_fails_at_build_time():
    def settings(vocab):
        return Settings.from_env({"OMNIMIND_MODEL_FACTORY": "tests.farm.real_data_models:text_classifier",
                                  "OMNIMIND_MODEL_HEAD": "multiclass",
                                  "OMNIMIND_MODEL_SIGNATURE": json.dumps(_tokens(vocab=vocab, mask=True))})

    build_model(settings(40))
    with pytest.raises(ConfigError, match="vocab 41"):
        build_model(settings(41))


@pytest.mark.parametrize("value,reason", [(1e39, "out_of_range"), (10**40, "out_of_range"), (10**400, "out_of_range"),
                                          (float("nan"), "non_finite"), (float("inf"), "non_finite")])
def test_a_number_is_checked_as_the_model_sees_it_after_the_float32_cast(value, reason):
    signature = Signature.from_json({"inputs": [{"name": "a", "dtype": "float32"}, {"name": "v", "shape": [2]}]})
    for example in ({"a": value, "v": [0.0, 0.0]}, {"a": 0.0, "v": [1.0, value]}):
        with pytest.raises(InvalidInput) as refused:
            signature.encode(example, max_batch=8)
        assert refused.value.reason == reason
