"""The torch modules of the real-streams benchmark (benchmarks/real_streams.py), one per stream.

The farm builds them through ``OMNIMIND_MODEL_FACTORY=benchmarks.stream_models:<stream>`` (input size from
``OMNIMIND_MODEL_INPUT_SIZE``); deep-river's baseline builds the same module with :func:`mlp`, so both
learn with the same architecture and, for a given seed, the same initial weights.

>>> from omnimind.config import Settings
>>> model = image_segments(Settings(model_input_size=18))
>>> model(__import__("torch").zeros(3, 18)).shape
torch.Size([3, 7])
"""
from __future__ import annotations

from torch import nn

#: Hidden width of every stream's MLP (two hidden layers, as the farm's default MLP).
HIDDEN = 64

#: Outputs per stream: one logit per class for the classifiers (cross entropy), one value for regression.
OUTPUTS = {"phishing": 2, "image_segments": 7, "friedman": 1, "trump_approval": 1}


def mlp(n_features: int, n_outputs: int) -> nn.Module:
    """input -> 64 -> ReLU -> 64 -> ReLU -> outputs (raw logits for a classifier)."""
    return nn.Sequential(nn.Linear(n_features, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, n_outputs))


def phishing(settings) -> nn.Module:
    """River's Phishing (binary): two logits."""
    return mlp(settings.model_input_size, OUTPUTS["phishing"])


def image_segments(settings) -> nn.Module:
    """River's ImageSegments (7 classes): seven logits."""
    return mlp(settings.model_input_size, OUTPUTS["image_segments"])


def friedman(settings) -> nn.Module:
    """River's FriedmanDrift generator (regression): one output."""
    return mlp(settings.model_input_size, OUTPUTS["friedman"])


def trump_approval(settings) -> nn.Module:
    """River's TrumpApproval (regression; feature scales differ by five orders of magnitude): one output."""
    return mlp(settings.model_input_size, OUTPUTS["trump_approval"])
