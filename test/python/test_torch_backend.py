"""`torch.compile(model, backend="nnforge")`: numerics, output structure, shapes, fallbacks."""

from __future__ import annotations

import copy
import importlib.metadata
import warnings

import pytest
import torch
import torch._dynamo

import models
from nnforge.integrations.torch_backend import NNForgeGraph, nnforge_backend, reset_stats, stats

TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def fresh_dynamo() -> None:
    torch._dynamo.reset()
    reset_stats()


def test_registered_by_name() -> None:
    assert "nnforge" in torch._dynamo.list_backends()
    (entry_point,) = importlib.metadata.entry_points(group="torch_dynamo_backends", name="nnforge")
    assert entry_point.load() is nnforge_backend


@pytest.mark.parametrize("factory", [models.mlp, models.cnn], ids=["mlp", "cnn"])
def test_matches_eager(factory) -> None:
    module, (example,) = factory()
    compiled = torch.compile(module, backend="nnforge")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # any fallback fails the test
        for batch in (example.shape[0], 3, 5):  # a new shape: dynamo's dynamic graph
            x = torch.randn(batch, *example.shape[1:])
            result = compiled(x)
            assert isinstance(result, torch.Tensor) and result.shape == module(x).shape
            torch.testing.assert_close(result, module(x), atol=TOLERANCE, rtol=0)


class TwoOutputs(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor):
        return {"sum": x + y, "pair": [torch.tanh(x), x * y]}


def test_output_structure_and_one_compile_per_shape() -> None:
    module = TwoOutputs()
    graph = NNForgeGraph(torch.fx.symbolic_trace(module), (torch.ones(2, 3), torch.ones(2, 3)))
    assert len(graph.compiled) == 1  # compiled for the example inputs up front
    for shape in ((2, 3), (4, 3), (4, 3)):
        x, y = torch.randn(shape), torch.randn(shape)
        result = graph(x, y)
        expected = module(x, y)
        assert set(result) == {"sum", "pair"} and isinstance(result["pair"], list)
        torch.testing.assert_close(result, expected, atol=TOLERANCE, rtol=0)
    assert len(graph.compiled) == 2
    assert graph.fallback_reason is None


class Quantize(torch.nn.Module):
    def forward(self, image: torch.Tensor, mask: torch.Tensor):
        pixels = (image * 255).round().clamp(0, 255).to(torch.uint8)
        return pixels, mask + 1, (mask.to(torch.float32) * image / 2).to(torch.int8)


def test_unsigned_results_keep_their_dtype() -> None:
    """The compiled code's integers are signless (uint8 is i8 in it): the
    graph's uint8 results come back as uint8 tensors, values above 127
    included, and a uint8 input is read as such."""
    module = Quantize()
    image = torch.linspace(0, 1, 12).reshape(3, 4)
    mask = torch.tensor([[0, 1, 200, 254]] * 3, dtype=torch.uint8)
    result = torch.compile(module, backend="nnforge")(image, mask)
    expected = module(image, mask)
    assert [t.dtype for t in result] == [torch.uint8, torch.uint8, torch.int8]
    torch.testing.assert_close(result, expected, atol=0, rtol=0)
    assert stats()["graphs_compiled"]["inference"] == 1 and not stats()["fallbacks"]


class Median(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.median(x, dim=1).values * 2  # aten.median.dim: torch-mlir has no lowering


def test_unsupported_graph_falls_back_with_one_warning() -> None:
    module = Median()
    compiled = torch.compile(module, backend="nnforge")
    x = torch.randn(3, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            torch.testing.assert_close(compiled(x), module(x))
    messages = [str(w.message) for w in caught if "nnforge backend" in str(w.message)]
    assert len(messages) == 1
    assert "running this graph eagerly" in messages[0] and "median" in messages[0]


def test_autograd_compiles_forward_and_backward() -> None:
    """An input requiring grad: AOTAutograd's graphs, compiled; gradients as eager's."""
    module, (x,) = models.mlp()
    expected = copy.deepcopy(module)
    compiled = torch.compile(module, backend="nnforge")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # any fallback fails the test
        compiled(x).square().sum().backward()
    expected(x).square().sum().backward()
    for (name, parameter), reference in zip(module.named_parameters(), expected.parameters()):
        torch.testing.assert_close(parameter.grad, reference.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert stats()["graphs_compiled"] == {"inference": 0, "forward": 1, "backward": 1}


class GraphBreak(torch.nn.Module):
    """A data-dependent Python branch on `.item()`: two graphs, eager code between."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = torch.nn.Linear(32, 64), torch.nn.Linear(64, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.first(x))
        if h.max().item() > 1e3:
            h = h / 1e3
        return self.second(h)


def test_graph_breaks_compile_after_inductor_compiled_in_the_process() -> None:
    """Each graph of a forward with a graph break compiles, also where
    inductor compiled before (torch.export inside dynamo's tracing context
    then failed on dynamo's guards)."""
    module, x = GraphBreak().eval(), torch.randn(8, 32)
    with torch.no_grad():
        torch.compile(GraphBreak().eval())(x)  # inductor
        compiled = torch.compile(module, backend="nnforge")
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # any fallback fails the test
            torch.testing.assert_close(compiled(x), module(x), atol=TOLERANCE, rtol=0)


def test_parameters_compile_as_constants_and_changes_recompile() -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64)).eval()
    graphs: list[NNForgeGraph] = []

    def backend(gm: torch.fx.GraphModule, inputs: list) -> NNForgeGraph:
        graphs.append(nnforge_backend(gm, inputs))
        return graphs[-1]

    compiled = torch.compile(module, backend=backend)
    x = torch.randn(4, 64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        torch.testing.assert_close(compiled(x), module(x), atol=TOLERANCE, rtol=0)
        ((call, positions),) = graphs[0].compiled.values()
        # Only x is an input: the 64 KiB weights are constants, in the weights file.
        assert len(positions) == 1 and call.model._model_weights is not None
        module[0].weight.add_(1.0)  # in place: the compiled constants are stale, so it compiles anew
        torch.testing.assert_close(compiled(x), module(x), atol=TOLERANCE, rtol=0)
        assert len(graphs[0].compiled) == 2
