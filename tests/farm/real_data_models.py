"""Model factories of the real-data farm tests (``OMNIMIND_MODEL_FACTORY=tests.farm.real_data_models:...``)."""
from __future__ import annotations

import torch
from torch import nn

from omnimind.learning.spec import ModelSpec

#: The text classifier's vocabulary: 0 pads, 1..VOCAB-1 are words.
VOCAB = 40
CLASSES = 3


class BagOfEmbeddings(nn.Module):
    """Token ids (int64) -> embedding -> masked mean -> linear: one logit per class."""

    def __init__(self, vocab: int, dim: int, classes: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.out = nn.Linear(dim, classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.to(torch.float32).unsqueeze(-1)
        pooled = (self.embedding(ids) * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.out(pooled)


def text_classifier(settings) -> nn.Module:
    return BagOfEmbeddings(VOCAB, 16, CLASSES)


def tabular_classifier(settings) -> nn.Module:
    width = ModelSpec.from_settings(settings).inputs.example_shape[0]
    return nn.Sequential(nn.Linear(width, 32), nn.ReLU(), nn.Linear(32, CLASSES))
