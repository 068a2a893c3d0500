"""The CPU benchmark's workloads: PyTorch modules with their inputs.

Each workload is built on demand by name (`build(name)`), from a fixed seed,
so that every process of the benchmark builds the same weights and inputs.
Two kinds:

- "model": a whole module that nnforge compiles ahead of time (saved `.so`),
  that onnxruntime runs after ONNX export, and eager PyTorch and inductor run;
- "graph-break": a module whose `forward` leaves PyTorch's graph (a
  data-dependent Python branch on `.item()`), run as a `torch.compile` user
  has it: eager, `torch.compile(model)` (inductor) and
  `torch.compile(model, backend="nnforge")`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Workload:
    name: str
    title: str
    kind: str  # "model" or "graph-break"
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    flops: float | None  # per call, for GFLOP/s; None where not meaningful
    # A plain matmul: numpy's sgemm is timed beside it, the BLAS's rate the code should reach.
    blas_ceiling: bool = False


class MatMul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


class Softmax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=-1)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise 3x3, 1x1 project (BN, ReLU6), plus the input."""

    def __init__(self, channels: int, expansion: int):
        super().__init__()
        hidden = channels * expansion
        self.layers = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class BasicBlock(nn.Module):
    """ResNet-18's block, with a strided 1x1 projection where the shape changes."""

    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 224x224 ImageNet inputs (torchvision's layout)."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        stages, inputs = [], 64
        for outputs, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages += [BasicBlock(inputs, outputs, stride), BasicBlock(outputs, outputs, 1)]
            inputs = outputs
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stages(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


class GPT2Block(nn.Module):
    """GPT-2's pre-norm block: causal self-attention and a 4x MLP with tanh GELU."""

    def __init__(self, width: int, heads: int, positions: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.register_buffer("causal", torch.tril(torch.ones(positions, positions, dtype=torch.bool)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(width, dim=-1)
        q, k, v = (t.reshape(batch, length, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(width // self.heads))
        scores = scores.masked_fill(~self.causal[:length, :length], float("-inf"))
        attention = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(batch, length, width)
        x = x + self.c_proj(attention)
        return x + self.mlp(self.ln_2(x))


class TinyGPT2(nn.Module):
    """A small GPT-2 (token and position embeddings, pre-norm blocks, tied LM head): token ids -> logits."""

    def __init__(self, vocabulary: int, positions: int, width: int, layers: int, heads: int):
        super().__init__()
        self.wte = nn.Embedding(vocabulary, width)
        self.wpe = nn.Embedding(positions, width)
        self.blocks = nn.Sequential(*(GPT2Block(width, heads, positions) for _ in range(layers)))
        self.ln_f = nn.LayerNorm(width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.blocks(self.wte(tokens) + self.wpe(positions))
        return self.ln_f(x) @ self.wte.weight.t()


class GraphBreakClassifier(nn.Module):
    """An MLP whose head depends on a value read back to Python (`.item()`):
    TorchDynamo captures the encoder and each head as separate graphs, and
    the branch runs in Python between them."""

    def __init__(self, width: int, hidden: int, classes: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width), nn.LayerNorm(width))
        self.wide = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, classes))
        self.narrow = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        head = self.wide if h.abs().mean().item() > 0.5 else self.narrow
        return torch.softmax(head(h), dim=-1)


def _matmul(n: int) -> Callable[[], Workload]:
    return lambda: Workload(f"matmul-{n}", f"matmul {n}²", "model", MatMul(),
                            (torch.randn(n, n), torch.randn(n, n)), 2.0 * n**3, blas_ceiling=True)


def _mlp() -> Workload:
    module = nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 1024))
    return Workload("mlp-64x1024x4096", "MLP 64×1024→4096→1024, GELU", "model", module,
                    (torch.randn(64, 1024),), 2 * 2.0 * 64 * 1024 * 4096)


def _conv_block() -> Workload:
    module = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
    return Workload("conv3x3-64c-56px", "3×3 conv + BN + ReLU, 64 ch, 56²", "model", module,
                    (torch.randn(1, 64, 56, 56),), 2.0 * 56 * 56 * 64 * 64 * 9)


def _resnet18() -> Workload:
    # 1.82 GMACs at 224x224.
    return Workload("resnet18-224", "ResNet-18, batch 1, 224²", "model", ResNet18(),
                    (torch.randn(1, 3, 224, 224),), 2 * 1.82e9)


def _mobilenet_block() -> Workload:
    channels, size, expansion = 32, 56, 6
    hidden = channels * expansion
    return Workload("mobilenet-block-32c-56px", "MobileNetV2 block (depthwise 3×3), 32→192→32 ch, 56²", "model",
                    InvertedResidual(channels, expansion), (torch.randn(1, channels, size, size),),
                    2.0 * size * size * (2 * channels * hidden + 9 * hidden))


def _transformer_layer() -> Workload:
    seq, d, ff = 128, 256, 1024
    module = nn.TransformerEncoderLayer(d_model=d, nhead=4, dim_feedforward=ff, dropout=0.0, batch_first=True)
    return Workload("transformer-layer-128x256", "transformer encoder layer, seq 128, d 256, 4 heads", "model",
                    module, (torch.randn(1, seq, d),), 2.0 * seq * d * (4 * d + 2 * ff) + 2 * 2.0 * seq * seq * d)


def _softmax() -> Workload:
    return Workload("softmax-512x1024", "softmax 512×1024", "model", Softmax(), (torch.randn(512, 1024),), None)


def _layer_norm() -> Workload:
    return Workload("layernorm-512x1024", "layer norm 512×1024", "model", nn.LayerNorm(1024),
                    (torch.randn(512, 1024),), None)


def _tiny_gpt2() -> Workload:
    vocabulary, positions, width, layers, heads, length = 4096, 128, 128, 2, 4, 64
    module = TinyGPT2(vocabulary, positions, width, layers, heads)
    per_layer = 2.0 * length * 12 * width * width + 2 * 2.0 * length * length * width
    return Workload("tiny-gpt2-64tok", "tiny GPT-2 (2 layers, d 128, vocab 4096), 64 tokens", "model", module,
                    (torch.randint(0, vocabulary, (1, length)),), layers * per_layer + 2.0 * length * width * vocabulary)


def _graph_break() -> Workload:
    width, hidden, classes, batch = 512, 2048, 256, 64
    return Workload("graph-break-mlp", "MLP with an .item() branch (graph break), 64×512→2048", "graph-break",
                    GraphBreakClassifier(width, hidden, classes), (torch.randn(batch, width),),
                    2.0 * batch * (2 * width * hidden + width * hidden + hidden * classes))


# name -> builder, in the order of the tables.
BUILDERS: dict[str, Callable[[], Workload]] = {
    "matmul-512": _matmul(512),
    "matmul-1024": _matmul(1024),
    "matmul-2048": _matmul(2048),
    "mlp-64x1024x4096": _mlp,
    "conv3x3-64c-56px": _conv_block,
    "resnet18-224": _resnet18,
    "mobilenet-block-32c-56px": _mobilenet_block,
    "transformer-layer-128x256": _transformer_layer,
    "softmax-512x1024": _softmax,
    "layernorm-512x1024": _layer_norm,
    "tiny-gpt2-64tok": _tiny_gpt2,
    "graph-break-mlp": _graph_break,
}
# What --quick runs: one of each kind of work, and the graph break.
QUICK = ("matmul-512", "softmax-512x1024", "graph-break-mlp")


def build(name: str) -> Workload:
    """The workload `name`, its weights and inputs from a fixed seed, in eval mode."""
    torch.manual_seed(0)
    workload = BUILDERS[name]()
    workload.module.eval()
    return workload
