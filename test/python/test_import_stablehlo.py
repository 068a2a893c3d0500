"""import_stablehlo on hand-written StableHLO (no jax needed): the rewrites of
what `stablehlo-legalize-to-linalg` leaves (control flow, sort, scatter,
custom calls) against numpy, and every bad-input path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnforge
from nnforge.errors import ModelLoadError, UnsupportedOpError


def compile_text(text: str, tmp_path: Path):
    path = tmp_path / "model.mlir"
    path.write_text(text)
    return nnforge.compile(path)


WHILE = """
func.func @main(%x: tensor<4xf32>, %n: tensor<i32>) -> tensor<4xf32> {
  %zero = stablehlo.constant dense<0> : tensor<i32>
  %one = stablehlo.constant dense<1> : tensor<i32>
  %init = stablehlo.constant dense<0.0> : tensor<4xf32>
  %r:2 = stablehlo.while(%i = %zero, %acc = %init) : tensor<i32>, tensor<4xf32>
  cond {
    %lt = stablehlo.compare LT, %i, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  } do {
    %f = stablehlo.convert %i : (tensor<i32>) -> tensor<f32>
    %b = stablehlo.broadcast_in_dim %f, dims = [] : (tensor<f32>) -> tensor<4xf32>
    %t = stablehlo.multiply %x, %b : tensor<4xf32>
    %s = stablehlo.add %acc, %t : tensor<4xf32>
    %next = stablehlo.add %i, %one : tensor<i32>
    stablehlo.return %next, %s : tensor<i32>, tensor<4xf32>
  }
  return %r#1 : tensor<4xf32>
}
"""


def test_while_runs_the_trip_count_given(tmp_path: Path) -> None:
    compiled = compile_text(WHILE, tmp_path)
    x = np.array([1, -2, 0.5, 3], np.float32)
    for n in (0, 1, 6):
        np.testing.assert_allclose(compiled(x, np.int32(n)), x * sum(range(n)), rtol=1e-6)


CASE_AND_IF = """
func.func @main(%index: tensor<i32>, %flag: tensor<i1>, %x: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %two = stablehlo.constant dense<2.0> : tensor<3xf32>
  %c = "stablehlo.case"(%index) ({
    %n = stablehlo.negate %x : tensor<3xf32>
    stablehlo.return %n : tensor<3xf32>
  }, {
    %m = stablehlo.multiply %x, %two : tensor<3xf32>
    stablehlo.return %m : tensor<3xf32>
  }, {
    %e = stablehlo.exponential %x : tensor<3xf32>
    stablehlo.return %e : tensor<3xf32>
  }) : (tensor<i32>) -> tensor<3xf32>
  %i = "stablehlo.if"(%flag) ({
    stablehlo.return %x : tensor<3xf32>
  }, {
    %a = stablehlo.abs %x : tensor<3xf32>
    stablehlo.return %a : tensor<3xf32>
  }) : (tensor<i1>) -> tensor<3xf32>
  return %c, %i : tensor<3xf32>, tensor<3xf32>
}
"""


def test_case_out_of_range_runs_the_last_branch_and_if(tmp_path: Path) -> None:
    compiled = compile_text(CASE_AND_IF, tmp_path)
    x = np.array([-1, 0.5, 2], np.float32)
    expected = {0: -x, 1: 2 * x, 2: np.exp(x), 7: np.exp(x), -1: np.exp(x)}
    for index, want in expected.items():
        chosen, picked = compiled(np.int32(index), np.bool_(index == 1), x)
        np.testing.assert_allclose(chosen, want, rtol=1e-6)
        np.testing.assert_array_equal(picked, x if index == 1 else np.abs(x))


# Rows sorted by descending key (ties: first come first), payload along;
# the comparator uses a constant from outside its region.
SORT = """
func.func @main(%keys: tensor<3x6xf32>, %payload: tensor<3x6xi32>) -> (tensor<3x6xf32>, tensor<3x6xi32>) {
  %scale = stablehlo.constant dense<-1.0> : tensor<f32>
  %r:2 = "stablehlo.sort"(%keys, %payload) <{dimension = 1 : i64, is_stable = true}> ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>, %c: tensor<i32>, %d: tensor<i32>):
    %na = stablehlo.multiply %a, %scale : tensor<f32>
    %nb = stablehlo.multiply %b, %scale : tensor<f32>
    %lt = stablehlo.compare LT, %na, %nb, TOTALORDER : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) : (tensor<3x6xf32>, tensor<3x6xi32>) -> (tensor<3x6xf32>, tensor<3x6xi32>)
  return %r#0, %r#1 : tensor<3x6xf32>, tensor<3x6xi32>
}
"""


def test_sort_is_stable_and_carries_payload(tmp_path: Path) -> None:
    compiled = compile_text(SORT, tmp_path)
    keys = np.array([[3, 1, 2, 3, 0, 1], [5, 4, 3, 2, 1, 0], [0, 0, 0, 0, 0, 0]], np.float32)
    payload = np.tile(np.arange(6, dtype=np.int32), (3, 1))
    sorted_keys, carried = compiled(keys, payload)
    order = np.argsort(-keys, axis=1, kind="stable")
    np.testing.assert_array_equal(sorted_keys, np.take_along_axis(keys, order, 1))
    np.testing.assert_array_equal(carried, order)


SORT_DYNAMIC = """
func.func @main(%x: tensor<?xi32>) -> tensor<?xi32> {
  %r = "stablehlo.sort"(%x) <{dimension = 0 : i64}> ({
  ^bb0(%a: tensor<i32>, %b: tensor<i32>):
    %lt = stablehlo.compare LT, %a, %b, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) : (tensor<?xi32>) -> tensor<?xi32>
  return %r : tensor<?xi32>
}
"""


def test_sort_of_any_length(tmp_path: Path) -> None:
    compiled = compile_text(SORT_DYNAMIC, tmp_path)
    for length in (0, 1, 2, 5, 33, 1000):
        x = np.random.default_rng(length).integers(-50, 50, length).astype(np.int32)
        np.testing.assert_array_equal(compiled(x), np.sort(x))


# Row updates (window dimension 1) added at row indices: a repeated index
# adds twice; an index whose row does not fit (-1, 4) is skipped.
SCATTER_ADD_ROWS = """
func.func @main(%x: tensor<4x3xf32>, %rows: tensor<5x1xi32>, %updates: tensor<5x3xf32>) -> tensor<4x3xf32> {
  %r = "stablehlo.scatter"(%x, %rows, %updates) <{scatter_dimension_numbers = #stablehlo.scatter<
      update_window_dims = [1], inserted_window_dims = [0], scatter_dims_to_operand_dims = [0],
      index_vector_dim = 1>}> ({
  ^bb0(%old: tensor<f32>, %new: tensor<f32>):
    %sum = stablehlo.add %old, %new : tensor<f32>
    stablehlo.return %sum : tensor<f32>
  }) : (tensor<4x3xf32>, tensor<5x1xi32>, tensor<5x3xf32>) -> tensor<4x3xf32>
  return %r : tensor<4x3xf32>
}
"""


def test_scatter_adds_rows_and_skips_those_out_of_bounds(tmp_path: Path) -> None:
    compiled = compile_text(SCATTER_ADD_ROWS, tmp_path)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    rows = np.array([[2], [0], [2], [-1], [4]], np.int32)
    updates = np.arange(15, dtype=np.float32).reshape(5, 3) * 10
    want = x.copy()
    for row, update in zip(rows[:, 0], updates):
        if 0 <= row < 4:
            want[row] += update
    np.testing.assert_array_equal(compiled(x, rows, updates), want)


# Windows of 2 columns set at (row, column) starts given as unsigned
# indices; a start whose window would pass the last column is skipped.
SCATTER_SET_WINDOWS = """
func.func @main(%x: tensor<3x5xi32>, %at: tensor<3x2xui32>, %updates: tensor<3x2xi32>) -> tensor<3x5xi32> {
  %r = "stablehlo.scatter"(%x, %at, %updates) <{scatter_dimension_numbers = #stablehlo.scatter<
      update_window_dims = [1], inserted_window_dims = [0], scatter_dims_to_operand_dims = [0, 1],
      index_vector_dim = 1>}> ({
  ^bb0(%old: tensor<i32>, %new: tensor<i32>):
    stablehlo.return %new : tensor<i32>
  }) : (tensor<3x5xi32>, tensor<3x2xui32>, tensor<3x2xi32>) -> tensor<3x5xi32>
  return %r : tensor<3x5xi32>
}
"""


def test_scatter_sets_windows_at_unsigned_starts(tmp_path: Path) -> None:
    compiled = compile_text(SCATTER_SET_WINDOWS, tmp_path)
    x = np.zeros((3, 5), np.int32)
    at = np.array([[0, 1], [2, 3], [1, 4]], np.uint32)  # the last window would end at column 6
    updates = np.array([[1, 2], [3, 4], [5, 6]], np.int32)
    want = x.copy()
    want[0, 1:3] = [1, 2]
    want[2, 3:5] = [3, 4]
    np.testing.assert_array_equal(compiled(x, at.view(np.int32), updates), want)


UNSIGNED = """
func.func @main(%x: tensor<3xui32>) -> (tensor<3xf32>, tensor<3xui32>) {
  %shift = stablehlo.constant dense<28> : tensor<3xui32>
  %f = stablehlo.convert %x : (tensor<3xui32>) -> tensor<3xf32>
  %s = stablehlo.shift_right_logical %x, %shift : tensor<3xui32>
  return %f, %s : tensor<3xf32>, tensor<3xui32>
}
"""


def test_unsigned_integers_keep_their_meaning(tmp_path: Path) -> None:
    compiled = compile_text(UNSIGNED, tmp_path)
    x = np.array([1, 2**31 + 5, 2**32 - 1], np.uint32)
    converted, shifted = compiled(x.view(np.int32))
    np.testing.assert_array_equal(converted, x.astype(np.float32))
    np.testing.assert_array_equal(shifted.view(np.uint32), x >> 28)


ANNOTATIONS = """
func.func @main(%x: tensor<2xf32>) -> tensor<2xf32> {
  %s = stablehlo.custom_call @Sharding(%x) {mhlo.sharding = "{replicated}"} : (tensor<2xf32>) -> tensor<2xf32>
  %b:2 = stablehlo.optimization_barrier %s, %x : tensor<2xf32>, tensor<2xf32>
  %r = stablehlo.add %b#0, %b#1 : tensor<2xf32>
  return %r : tensor<2xf32>
}
"""


def test_annotations_and_barriers_are_dropped(tmp_path: Path) -> None:
    compiled = compile_text(ANNOTATIONS, tmp_path)
    np.testing.assert_array_equal(compiled(np.array([1, 2], np.float32)), [2, 4])


def test_stablehlo_level_is_the_module_as_read() -> None:
    text = nnforge.import_stablehlo(ANNOTATIONS, level="stablehlo")
    assert isinstance(text, str) and "stablehlo.optimization_barrier" in text


def test_linalg_level_has_upstream_dialects_only() -> None:
    module = nnforge.import_stablehlo(SORT)
    dialects = {op.name.split(".")[0] for op in nnforge.importers.handover.walk_ops(module.operation)}
    assert dialects <= {"func", "arith", "tensor", "scf", "linalg"}


DYNAMIC_GATHER = """
func.func @main(%x: tensor<?x6xf32>, %starts: tensor<2xi32>, %sizes: tensor<2xi32>) -> tensor<?x?xf32> {
  %r = "stablehlo.dynamic_gather"(%x, %starts, %sizes) <{dimension_numbers = #stablehlo.gather<
      offset_dims = [0, 1], start_index_map = [1, 0]>}>
      : (tensor<?x6xf32>, tensor<2xi32>, tensor<2xi32>) -> tensor<?x?xf32>
  return %r : tensor<?x?xf32>
}
"""


def test_dynamic_gather_of_one_slice_clamps_its_starts(tmp_path: Path) -> None:
    # start_index_map [1, 0]: starts[0] is the column, starts[1] the row. A
    # start past the end moves back until the slice fits (gather's clamp).
    compiled = compile_text(DYNAMIC_GATHER, tmp_path)
    x = np.arange(5 * 6, dtype=np.float32).reshape(5, 6)
    for (column, row), (rows, columns) in [((1, 2), (3, 4)), ((5, 9), (2, 3)), ((-3, -1), (5, 6)), ((0, 0), (0, 2))]:
        r, c = min(max(row, 0), 5 - rows), min(max(column, 0), 6 - columns)
        result = compiled(x, np.array([column, row], np.int32), np.array([rows, columns], np.int32))
        np.testing.assert_array_equal(result, x[r:r + rows, c:c + columns])


DYNAMIC_UPDATE_SLICE = """
func.func @main(%x: tensor<?x3xf32>, %u: tensor<2x2xf32>, %i: tensor<i32>, %j: tensor<i32>) -> tensor<?x3xf32> {
  %r = stablehlo.dynamic_update_slice %x, %u, %i, %j
      : (tensor<?x3xf32>, tensor<2x2xf32>, tensor<i32>, tensor<i32>) -> tensor<?x3xf32>
  return %r : tensor<?x3xf32>
}
"""


def test_dynamic_update_slice_of_symbolic_size_clamps_its_starts(tmp_path: Path) -> None:
    compiled = compile_text(DYNAMIC_UPDATE_SLICE, tmp_path)
    update = np.array([[10, 20], [30, 40]], np.float32)
    for rows, (i, j) in [(4, (1, 1)), (4, (7, 5)), (2, (-3, 0)), (5, (3, -1))]:
        x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
        expected = x.copy()
        r, c = min(max(i, 0), rows - 2), min(max(j, 0), 1)
        expected[r:r + 2, c:c + 2] = update
        np.testing.assert_array_equal(compiled(x, update, np.int32(i), np.int32(j)), expected)
        np.testing.assert_array_equal(x, np.arange(rows * 3, dtype=np.float32).reshape(rows, 3))


# A gather collapsing a dimension is not one slice: left for the report.
GATHER_COLLAPSING = """
func.func @main(%x: tensor<?x6xf32>, %start: tensor<1xi32>, %sizes: tensor<2xi32>) -> tensor<6xf32> {
  %r = "stablehlo.dynamic_gather"(%x, %start, %sizes) <{dimension_numbers = #stablehlo.gather<
      offset_dims = [0], collapsed_slice_dims = [0], start_index_map = [0]>}>
      : (tensor<?x6xf32>, tensor<1xi32>, tensor<2xi32>) -> tensor<6xf32>
  return %r : tensor<6xf32>
}
"""


def test_other_dynamic_gathers_are_named() -> None:
    with pytest.raises(UnsupportedOpError) as raised:
        nnforge.import_stablehlo(GATHER_COLLAPSING)
    assert [(op.kind, op.count) for op in raised.value.ops] == [("stablehlo.dynamic_gather", 1)]


UNSUPPORTED = """
func.func @main(%x: tensor<4xf32>) -> tensor<4xf32> {
  %a = stablehlo.custom_call @my_kernel(%x) : (tensor<4xf32>) -> tensor<4xf32>
  %b = stablehlo.custom_call @my_kernel(%a) : (tensor<4xf32>) -> tensor<4xf32>
  %c = stablehlo.custom_call @other_kernel(%b) : (tensor<4xf32>) -> tensor<4xf32>
  %d = "stablehlo.all_reduce"(%c) ({
  ^bb0(%p: tensor<f32>, %q: tensor<f32>):
    %s = stablehlo.add %p, %q : tensor<f32>
    stablehlo.return %s : tensor<f32>
  }) {replica_groups = dense<[[0]]> : tensor<1x1xi64>} : (tensor<4xf32>) -> tensor<4xf32>
  return %d : tensor<4xf32>
}
"""


def test_unconverted_ops_are_named_with_counts() -> None:
    with pytest.raises(UnsupportedOpError) as raised:
        nnforge.import_stablehlo(UNSUPPORTED)
    assert [(op.kind, op.count) for op in raised.value.ops] == [
        ("stablehlo.custom_call @my_kernel", 2),
        ("stablehlo.custom_call @other_kernel", 1),
        ("stablehlo.all_reduce", 1),
    ]


@pytest.mark.parametrize(
    "source, error, match",
    [
        ("func.func @main( {", ModelLoadError, "cannot be read as MLIR"),
        (b"ML\xefR\x0dStableHLO_v1.0.0\x00garbage", ModelLoadError, "cannot be read as MLIR"),
        ("missing_model.mlirbc", ModelLoadError, "no such file"),
        (42, ModelLoadError, "not int"),
    ],
)
def test_bad_sources(source, error, match) -> None:
    with pytest.raises(error, match=match):
        nnforge.import_stablehlo(source)


def test_bad_level() -> None:
    with pytest.raises(ValueError, match="expected one of stablehlo, tosa, linalg, nnf"):
        nnforge.import_stablehlo(ANNOTATIONS, level="torch")
