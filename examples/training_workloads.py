"""The training workloads of nnforge's tests, benchmark and examples.

Each workload builds a seeded model, gives batches for a step number and
computes a loss; `train` runs steps of forward, backward and optimizer.
Shared by test/python/test_training.py, benchmarks/training.py and
examples/train_ddp.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional


# Per optimizer: the learning rate a workload takes unless it sets its own.
LEARNING_RATES = {"sgd": 0.01, "adam": 1e-3}


@dataclass
class Workload:
    """A model, its batches, its loss and its learning rate per optimizer."""

    name: str
    model: nn.Module
    batch: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]  # (step, batch size) -> (inputs, targets)
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, targets) -> loss
    batch_size: int
    learning_rates: dict[str, float] = field(default_factory=lambda: dict(LEARNING_RATES))


def _data(step: int, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100003 + step)


def _classification(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return functional.cross_entropy(outputs, targets)


def mlp() -> Workload:
    """An MLP classifier: 64 features, two hidden layers of 128, 10 classes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))

    def batch(step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = _data(step, 0)
        return torch.randn(size, 64, generator=generator), torch.randint(0, 10, (size,), generator=generator)

    return Workload("mlp", model, batch, _classification, 32)


def cnn() -> Workload:
    """A small CNN on 32x32 images: conv/BN (training mode)/ReLU/max-pool twice, a linear classifier.

    The convolutions have no bias: a bias before batch norm has no gradient
    but rounding noise (which Adam scales up to full steps). The learning
    rates are a tenth of the others' (SGD 1e-3, Adam 1e-4): at 0.01 and 1e-3
    eager training of this model is itself unstable (SGD's loss climbs from
    2.6 to 23 in 10 steps; Adam's losses after 30 steps move by 4e-4 relative
    when the initial weights move by 1e-8), so a comparison with eager would
    measure amplified rounding noise. At these rates a change of 1e-7 in the
    initial weights moves eager's 50 losses by at most 3e-7."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 10),
    )

    def batch(step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = _data(step, 1)
        return torch.randn(size, 3, 32, 32, generator=generator), torch.randint(0, 10, (size,), generator=generator)

    return Workload("cnn", model, batch, _classification, 16, {"sgd": 1e-3, "adam": 1e-4})


class EncoderClassifier(nn.Module):
    """A transformer encoder layer (dropout 0.1) over a sequence, mean-pooled, classified."""

    def __init__(self, width: int = 64, heads: int = 4, classes: int = 10):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.1, batch_first=True)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(x).mean(dim=1))


def encoder() -> Workload:
    """A transformer encoder layer classifying sequences of 16 vectors of 64."""
    torch.manual_seed(2)
    model = EncoderClassifier()

    def batch(step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = _data(step, 2)
        return torch.randn(size, 16, 64, generator=generator), torch.randint(0, 10, (size,), generator=generator)

    return Workload("encoder", model, batch, _classification, 8)


class CausalBlock(nn.Module):
    """GPT-2's block: layer norm, causal self-attention, layer norm, GELU MLP, residuals."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.projection = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=2)
        q, k, v = (t.view(batch, length, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        attended = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.projection(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.down(functional.gelu(self.up(self.norm2(x))))


class TinyGPT2(nn.Module):
    """Token and position embeddings, 2 causal blocks, a final layer norm, logits over the vocabulary."""

    def __init__(self, vocabulary: int = 512, width: int = 64, heads: int = 4, context: int = 32):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocabulary, width), nn.Embedding(context, width)
        self.blocks = nn.Sequential(CausalBlock(width, heads), CausalBlock(width, heads))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocabulary)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return self.head(self.norm(self.blocks(self.tokens(tokens) + self.positions(positions))))


VOCABULARY = 512
CONTEXT = 32


def gpt2() -> Workload:
    """The tiny GPT-2 on sequences of 32 tokens of a 512-token vocabulary."""
    torch.manual_seed(3)
    model = TinyGPT2(VOCABULARY, context=CONTEXT)

    def batch(step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.randint(0, VOCABULARY, (size, CONTEXT + 1), generator=_data(step, 3))
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(outputs.reshape(-1, VOCABULARY), targets.reshape(-1))

    return Workload("gpt2", model, batch, loss, 4)


WORKLOADS: dict[str, Callable[[], Workload]] = {"mlp": mlp, "cnn": cnn, "encoder": encoder, "gpt2": gpt2}


def optimizer(name: str, model: nn.Module, workload: Workload) -> torch.optim.Optimizer:
    """"sgd" (momentum 0.9) or "adam" at the workload's learning rate."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=workload.learning_rates[name], momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=workload.learning_rates[name])
    raise ValueError(f"unknown optimizer {name!r}: sgd or adam")


def train(
    workload: Workload,
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    optimizer_name: str,
    steps: int,
    sizes: list[int] | None = None,
    seed: int = 0,
) -> list[float]:
    """Trains `model` (called through `forward`) for `steps`; the losses.

    `sizes`: the batch size per step (default: the workload's every step).
    The generator is seeded first, so that dropout draws alike each run.
    """
    model.train()
    chosen = optimizer(optimizer_name, model, workload)
    torch.manual_seed(seed)
    losses = []
    for step in range(steps):
        inputs, targets = workload.batch(step, sizes[step] if sizes else workload.batch_size)
        chosen.zero_grad()
        loss = workload.loss(forward(inputs), targets)
        loss.backward()
        chosen.step()
        losses.append(loss.item())
    return losses


def copy_of(workload: Workload) -> nn.Module:
    """A copy of the workload's model, same weights."""
    return copy.deepcopy(workload.model)
