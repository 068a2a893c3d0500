"""Small PyTorch models shared by the tests.

Each factory returns `(module.eval(), example_inputs)`, with fixed weights
(seeded) and inputs small enough for fast tests.
"""

from __future__ import annotations

import torch
from torch import nn


def _seeded(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


class MLP(nn.Module):
    """Linear -> ReLU -> Linear -> GELU -> Linear -> softmax."""

    def __init__(self, features: int = 32, hidden: int = 64, classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x))
        x = nn.functional.gelu(self.fc2(x))
        return torch.softmax(self.fc3(x), dim=-1)


class CNN(nn.Module):
    """Two conv+batchnorm+ReLU blocks, max pooling, global average pooling, a classifier."""

    def __init__(self, channels: int = 3, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def mlp(batch: int = 4) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """An MLP on [batch, 32] inputs."""
    _seeded(0)
    return MLP().eval(), (torch.randn(batch, 32),)


def cnn(batch: int = 2) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A small CNN on [batch, 3, 16, 16] images."""
    _seeded(1)
    return CNN().eval(), (torch.randn(batch, 3, 16, 16),)


def transformer_layer(batch: int = 2, sequence: int = 8) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A transformer encoder layer (d_model 32, 4 heads) on [batch, sequence, 32]."""
    _seeded(2)
    layer = nn.TransformerEncoderLayer(
        d_model=32, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True
    )
    return layer.eval(), (torch.randn(batch, sequence, 32),)


def dynamic_batch_mlp() -> tuple[nn.Module, tuple[torch.Tensor, ...], dict]:
    """The MLP with its batch dimension dynamic: (module, inputs, dynamic_shapes)."""
    module, inputs = mlp(batch=4)
    batch = torch.export.Dim("batch", min=1, max=1024)
    return module, inputs, {"x": {0: batch}}
