"""nnforge.import_torch on the shared models, dynamic batch, and every error path."""

from __future__ import annotations

import inspect

import models
import numpy as np
import pytest
import torch
from import_checks import check_imported, input_types

import nnforge
from nnforge.errors import ModelLoadError, UnsupportedOpError

LEVELS = ["torch", "tosa", "linalg", "nnf"]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("factory", ["mlp", "cnn", "transformer_layer"])
def test_models(factory: str, level: str) -> None:
    module, inputs = getattr(models, factory)()
    check_imported(nnforge.import_torch(module, inputs, level=level), level)


@pytest.mark.parametrize("level", LEVELS)
def test_dynamic_batch_stays_dynamic(level: str) -> None:
    module, inputs, dynamic_shapes = models.dynamic_batch_mlp()
    result = nnforge.import_torch(module, inputs, dynamic_shapes=dynamic_shapes, level=level)
    check_imported(result, level)
    assert input_types(result) in (["tensor<?x32xf32>"], ["!torch.vtensor<[?,32],f32>"])


def test_static_shapes_without_dynamic_shapes() -> None:
    module, inputs = models.mlp(batch=3)
    assert input_types(nnforge.import_torch(module, inputs)) == ["tensor<3x32xf32>"]


def test_nnf_level_records_raised_ops() -> None:
    module, inputs = models.mlp()
    result = nnforge.import_torch(module, inputs, level="nnf")
    check_imported(result, "nnf")
    assert nnforge.importers.raised_op_count(result) > 0


class NormsAndComposites(torch.nn.Module):
    """Ops the decompositions treat differently: batch and layer norm (torch-mlir's
    table), the variance (nnforge's own), RMS norm (a composite op kept whole)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.batch_norm = torch.nn.BatchNorm2d(8)
        self.layer_norm = torch.nn.LayerNorm(14)
        self.rms_norm = torch.nn.RMSNorm(14)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer_norm(torch.relu(self.batch_norm(self.conv(x))))
        return self.rms_norm(y) + torch.var(y, dim=1, keepdim=True)


@pytest.mark.parametrize("factory", ["cnn", "transformer_layer", "dynamic_batch_mlp", "norms"])
def test_one_trace_gives_the_decomposed_export(factory: str) -> None:
    """export_decomposed traces the module once to the ops that torch.export
    followed by run_decompositions(decomposition_table()) gives."""
    from nnforge.importers import torch_frontend

    if factory == "norms":
        module, inputs, dynamic_shapes = NormsAndComposites().eval(), (torch.randn(2, 3, 16, 16),), None
    else:
        module, inputs, *rest = getattr(models, factory)()
        dynamic_shapes = rest[0] if rest else None
    program, _ = torch_frontend.export_decomposed(module, inputs, dynamic_shapes)
    exported, _ = torch_frontend.export(module, inputs, dynamic_shapes)
    expected = exported.run_decompositions(torch_frontend.decomposition_table())
    assert program.graph_module.code == expected.graph_module.code
    assert str(program.graph_signature) == str(expected.graph_signature)
    assert program.range_constraints.keys() == expected.range_constraints.keys()


class DataDependentBranch(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # torch.export cannot trace a branch on data
            return x * 2
        return x - 1


def test_untraceable_module() -> None:
    with pytest.raises(ModelLoadError, match="torch.export cannot export PyTorch module DataDependentBranch"):
        nnforge.import_torch(DataDependentBranch(), (torch.randn(3),))


def test_not_a_module() -> None:
    with pytest.raises(ModelLoadError, match="takes a torch.nn.Module"):
        nnforge.import_torch(lambda x: x, (torch.randn(3),))


def test_wrong_example_inputs() -> None:
    module, _ = models.mlp()
    with pytest.raises(ModelLoadError, match="MLP"):
        nnforge.import_torch(module, (torch.randn(4, 5),))


class AddsToInput(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.add_(1)
        return x * 2


def test_state_updates_are_refused_not_returned() -> None:
    """A module in training mode (BatchNorm updates its running statistics)
    is refused, naming the buffers and the way out; returning the buffers as
    extra outputs changed what forward returns."""
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ModelLoadError, match=r"updates its buffers 1\.num_batches_tracked, 1\.running_mean, 1\.running_var.*module\.eval\(\)"):
        nnforge.compile(module, (x,))
    compiled = nnforge.compile(module.eval(), (x,))
    result = compiled(x)
    assert isinstance(result, torch.Tensor)
    torch.testing.assert_close(result, module(x), atol=1e-4, rtol=0)
    with pytest.raises(ModelLoadError, match="updates its inputs x"):
        nnforge.import_torch(AddsToInput(), (torch.randn(3),))


class MediansAndMode(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        by_rows = torch.median(x, 0).values
        by_columns = torch.median(x, 1).values
        return by_rows + by_columns + torch.mode(x, 0).values


def _line_of(text: str) -> int:
    source, first = inspect.getsourcelines(MediansAndMode.forward)
    return first + next(i for i, line in enumerate(source) if text in line)


@pytest.mark.parametrize("level", LEVELS)
def test_unsupported_ops_name_kind_count_and_source_line(level: str) -> None:
    with pytest.raises(UnsupportedOpError) as caught:
        nnforge.import_torch(MediansAndMode(), (torch.randn(4, 4),), level=level)
    kinds = {op.kind: op for op in caught.value.ops}
    assert set(kinds) == {"torch.aten.median.dim", "torch.aten.mode"}
    assert kinds["torch.aten.median.dim"].count == 2
    assert kinds["torch.aten.median.dim"].locations == (
        f"{__file__}:{_line_of('by_rows =')}",
        f"{__file__}:{_line_of('by_columns =')}",
    )
    assert kinds["torch.aten.mode"].locations == (f"{__file__}:{_line_of('torch.mode')}",)


class Sorts(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sort(x, 0).values


def test_tm_tensor_ops_come_back_as_loops_on_buffers() -> None:
    # torch-mlir lowers sort to its own tm_tensor dialect, not to linalg; it
    # then lowers it to loops itself, on buffers.
    x = torch.randn(4, 4)
    check_imported(nnforge.import_torch(Sorts(), (x,), level="tosa"), "tosa")
    text = str(nnforge.import_torch(Sorts(), (x,), level="linalg"))
    assert "tm_tensor" not in text and "memref<4x4xf32>" in text and "scf.for" in text
    np.testing.assert_array_equal(nnforge.compile(Sorts(), (x,))(x.numpy()), Sorts()(x).numpy())


def test_report_marks_unsupported_ops() -> None:
    from nnforge.importers.coverage import torch_coverage

    report = torch_coverage(MediansAndMode(), (torch.randn(4, 4),))
    rows = {row.kind: row for row in report.rows}
    assert rows["torch.aten.median.dim"].count == 2
    assert rows["torch.aten.median.dim"].supported is False
    assert rows["torch.aten.mode"].supported is False
    assert not report.supported
    module, inputs = models.cnn()
    report = torch_coverage(module, inputs)
    assert report.supported and "torch.aten.convolution" in {row.kind for row in report.rows}


class VarianceAndMean(torch.nn.Module):
    def __init__(self, dim: tuple[int, ...] | None, correction: int, keepdim: bool):
        super().__init__()
        self.dim, self.correction, self.keepdim = dim, correction, keepdim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.var_mean(x, dim=self.dim, correction=self.correction, keepdim=self.keepdim)


@pytest.mark.parametrize("dim,correction,keepdim", [
    ((1,), 1, False),
    ((0, 2), 0, True),
    (None, 1, False),
    ((-1,), 2, True),
    ((0,), 4, False),  # as many degrees of freedom as elements: NaN, as in PyTorch
])
def test_variances_stay_in_the_input_precision(dim, correction: int, keepdim: bool) -> None:
    """torch-mlir would compute variances through an f64 copy of the input;
    nnforge computes them as PyTorch does, in f32 (the mean, then the squared
    deviations), with PyTorch's results."""
    module = VarianceAndMean(dim, correction, keepdim)
    x = torch.randn(4, 6, 7) * 3 + 5
    assert "f64" not in str(nnforge.import_torch(module, (x,)))
    compiled = nnforge.compile(module, (x,))
    for got, expected in zip(compiled(x.numpy()), module(x)):
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5, equal_nan=True)


def test_layer_norm_computes_in_f32() -> None:
    module = torch.nn.LayerNorm(64)
    x = torch.randn(3, 64)
    linalg = str(nnforge.import_torch(module, (x,)))
    assert "tensor<3x64xf64>" not in linalg


class _ToUnsigned(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x * 2).to(torch.uint8), x.to(torch.uint8)


def test_floats_cast_to_uint8_keep_values_above_int8s_maximum() -> None:
    """torch-mlir converts float -> uint8 through int8's `fptosi`, which
    saturated 200.0 at 127; the importer routes it through int64. Results
    come back in the signless form (int8 arrays, viewed as uint8)."""
    x = torch.tensor([0.0, 3.7, 63.5, 100.0, 127.5])
    first, second = nnforge.compile(_ToUnsigned(), (x,), threads=1)(x.numpy())
    expected = _ToUnsigned()(x)
    for result, reference in zip((first, second), expected):
        np.testing.assert_array_equal(result.view(np.uint8), reference.numpy())
