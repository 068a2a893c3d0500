"""Training with `torch.compile(model, backend="nnforge")`: per-step losses and
parameters against eager PyTorch (SGD with momentum and Adam), zero fallbacks,
a last batch of another size, fallbacks reported with the op named, and
DistributedDataParallel over 2 processes against eager DDP."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch._dynamo

from nnforge.integrations import torch_backend

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))
import training_workloads  # noqa: E402

# Steps per optimizer: CI keeps it short (each workload compiles one forward
# and one backward graph); NNFORGE_SLOW_TESTS=1 runs the 50.
STEPS = 50 if os.environ.get("NNFORGE_SLOW_TESTS") == "1" else 4
LOSS_TOLERANCE = 1e-4
PARAMETER_TOLERANCE = 1e-3


@pytest.fixture(autouse=True)
def fresh_backend() -> None:
    torch._dynamo.reset()
    torch_backend.reset_stats()


def _relative(model: torch.nn.Module, expected: torch.nn.Module) -> float:
    """How far the parameters and buffers are from eager's, relative, over all of them.

    Norm-wise over the whole model, not per tensor: a parameter with no true
    gradient (a key bias of attention: softmax ignores it) gets rounding
    noise, which Adam scales into steps of full size, in eager as well."""
    actual = torch.cat([value.double().flatten() for value in model.state_dict().values()])
    reference = torch.cat([value.double().flatten() for value in expected.state_dict().values()])
    return ((actual - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize("name", list(training_workloads.WORKLOADS))
def test_trains_as_eager(name: str, caplog: pytest.LogCaptureFixture) -> None:
    """Each optimizer from the same weights: the compiled module's losses and
    final parameters are eager's; one forward and one backward graph compiled,
    nothing runs eagerly, every graph gets the optimized code generation (the
    gradients of embeddings and max pooling scatter nothing). The MLP's last
    batch has another size."""
    workload = training_workloads.WORKLOADS[name]()
    sizes = [workload.batch_size] * STEPS
    if name == "mlp":
        sizes[-1] = workload.batch_size // 2 + 1
    model = training_workloads.copy_of(workload)
    initial = copy.deepcopy(model.state_dict())
    compiled = torch.compile(model, backend="nnforge")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback warns: fail
        for optimizer in ("sgd", "adam"):
            eager_model = training_workloads.copy_of(workload)
            expected = training_workloads.train(workload, eager_model, eager_model, optimizer, STEPS, sizes)
            model.load_state_dict(initial)  # the same module: no new compilation
            losses = training_workloads.train(workload, model, compiled, optimizer, STEPS, sizes)
            for step, (loss, eager_loss) in enumerate(zip(losses, expected)):
                assert abs(loss - eager_loss) <= LOSS_TOLERANCE * abs(eager_loss), (optimizer, step, losses, expected)
            assert _relative(model, eager_model) <= PARAMETER_TOLERANCE, optimizer
    stats = torch_backend.stats()
    assert stats["fallbacks"] == []
    assert "naive lowering" not in caplog.text
    # The MLP's last batch: dynamo gives a graph with a dynamic batch, which
    # nnforge compiles per batch size it meets (17, then 32 in the second run).
    count = 3 if name == "mlp" else 1
    assert stats["graphs_compiled"] == {"inference": 0, "forward": count, "backward": count}
    assert stats["recompiles"]["forward"] == (1 if name == "mlp" else 0)


def test_batch_norm_statistics_as_precise_as_eager() -> None:
    """A training-mode batch norm over 16384 values per channel: its output,
    gradients and running mean as close to the f64 result as eager's (PyTorch
    accumulates the channel sums in f64; summed in f32 they were 7e-7 off)."""
    x = torch.randn(16, 16, 32, 32, generator=torch.Generator().manual_seed(0)) + 0.5
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))

    def run(module: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
        inputs = x.to(dtype).requires_grad_()
        output = forward(inputs)
        (output * upstream.to(dtype)).sum().backward()
        return [output, inputs.grad, module.weight.grad, module.bias.grad, module.running_mean]

    exact_module = torch.nn.BatchNorm2d(16).double()
    exact = run(exact_module, exact_module, torch.float64)
    module = torch.nn.BatchNorm2d(16)
    actual = run(module, torch.compile(module, backend="nnforge"), torch.float32)
    for name, value, reference in zip(("output", "dx", "dweight", "dbias", "running_mean"), actual, exact):
        error = ((value.double() - reference).norm() / reference.norm()).item()
        assert error <= 1e-7, (name, error)
    assert torch_backend.stats()["fallbacks"] == []


class Median(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.median(self.linear(x), dim=1).values  # aten.median.dim: torch-mlir has no lowering


def test_fallback_is_reported_with_the_op() -> None:
    module, x = Median(), torch.randn(4, 8)
    compiled = torch.compile(module, backend="nnforge")
    with pytest.warns(RuntimeWarning, match="running this forward graph eagerly.*median"):
        compiled(x).sum().backward()
    expected = copy.deepcopy(module)
    expected.zero_grad()
    module.zero_grad()
    compiled(x).sum().backward()
    expected(x).sum().backward()
    torch.testing.assert_close(module.linear.weight.grad, expected.linear.weight.grad)
    fallbacks = torch_backend.stats()["fallbacks"]
    assert [entry["graph"] for entry in fallbacks if entry["graph"] == "forward"] == ["forward"]
    assert any("median" in op for entry in fallbacks for op in entry["ops"])


def test_inference_keeps_its_path() -> None:
    workload = training_workloads.mlp()
    model = workload.model.eval()
    x, _ = workload.batch(0, 4)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, backend="nnforge")(x), model(x), atol=1e-4, rtol=0)
    assert torch_backend.stats()["graphs_compiled"] == {"inference": 1, "forward": 0, "backward": 0}


def _forward_outputs(graph_module: torch.fx.GraphModule) -> int:
    return len(next(node for node in graph_module.graph.nodes if node.op == "output").args[0])


def test_backward_recomputes_what_is_cheap_to_recompute(monkeypatch: pytest.MonkeyPatch) -> None:
    """The forward graph saves fewer activations than AOTAutograd's default
    partition (the MLP's ReLU masks are recomputed by the backward), and the
    gradients stay eager's."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    from nnforge.integrations import torch_training

    workload = training_workloads.mlp()
    model = workload.model
    x, targets = workload.batch(0, workload.batch_size)

    default_forwards: list[torch.fx.GraphModule] = []

    def keep_forward(graph_module: torch.fx.GraphModule, _: object) -> object:
        default_forwards.append(graph_module)
        return make_boxed_func(graph_module)

    default = aot_autograd(fw_compiler=keep_forward, bw_compiler=lambda gm, _: make_boxed_func(gm))
    workload.loss(torch.compile(copy.deepcopy(model), backend=default)(x), targets).backward()
    torch._dynamo.reset()

    graphs: list[torch_training.AOTGraph] = []

    class Recorded(torch_training.AOTGraph):
        def __init__(self, graph_module: torch.fx.GraphModule, kind: str):
            super().__init__(graph_module, kind)
            graphs.append(self)

    monkeypatch.setattr(torch_training, "AOTGraph", Recorded)
    expected = copy.deepcopy(model)
    workload.loss(torch.compile(model, backend="nnforge")(x), targets).backward()
    workload.loss(expected(x), targets).backward()
    forward = next(graph for graph in graphs if graph.kind == "forward")
    assert _forward_outputs(forward.graph_module) < _forward_outputs(default_forwards[0])
    for actual, reference in zip(model.parameters(), expected.parameters()):
        torch.testing.assert_close(actual.grad, reference.grad, atol=1e-5, rtol=1e-4)
    assert torch_backend.stats()["fallbacks"] == []


def _train_ddp(tmp_path: Path, *options: str) -> list[float]:
    output = tmp_path / f"losses{'-'.join(options)}.json"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        str(EXAMPLES / "train_ddp.py"), "--steps", "3", "--json", str(output), *options,
    ]
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    finished = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=environment)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    result = json.loads(output.read_text())
    assert result["world_size"] == 2
    if "--eager" not in options:
        assert "'fallbacks': []" in finished.stdout, finished.stdout[-3000:]
    return result["losses"]


def test_ddp_two_processes_match_eager_ddp(tmp_path: Path) -> None:
    """torchrun --nproc-per-node 2 examples/train_ddp.py (gloo): the compiled
    module's losses are eager DDP's."""
    losses = _train_ddp(tmp_path)
    expected = _train_ddp(tmp_path, "--eager")
    assert len(losses) == len(expected) == 3
    for loss, eager_loss in zip(losses, expected):
        assert abs(loss - eager_loss) <= LOSS_TOLERANCE * abs(eager_loss), (losses, expected)
