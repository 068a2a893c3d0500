"""Profiles: `compiled.profile(*inputs)` and `nnforge profile` time each
dispatch region of a small model, and the HTML page renders its regions in
headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import nnforge
import nnforge.cli
from nnforge.compiler import compile_profiled
from nnforge.errors import ProfileError
from nnforge.profiling.html import render

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless Chromium with nothing reaching the network or the user's profile.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 128)
        self.fc2 = torch.nn.Linear(128, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.fc1(x))  # SOURCE-FC1
        return torch.softmax(self.fc2(hidden), dim=-1)  # SOURCE-FC2


@pytest.fixture(scope="module")
def compiled_and_profile(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    x = torch.randn(16, 64)
    compiled = nnforge.compile(MLP().eval(), (x,), threads=1)
    page = tmp_path_factory.mktemp("profile") / "mlp.html"
    profile = compiled.profile(x.numpy(), runs=5, html=page)
    return compiled, x, profile, page


def test_profile_times_every_region_and_shares_add_up(compiled_and_profile) -> None:
    _, _, profile, _ = compiled_and_profile
    assert profile.runs == 5 and profile.seconds > 0
    assert any(time.region.kind == "dispatch" for time in profile.regions)
    for time in profile.regions:
        assert time.seconds > 0, time.region
        assert time.calls == 1, time.region  # each region runs once per call of this model
    assert sum(time.seconds for time in profile.regions) <= profile.seconds
    shares = sum(time.share for time in profile.regions) + profile.outside_share
    assert shares == pytest.approx(1.0, abs=1e-6)
    assert [time.seconds for time in profile.regions] == sorted(
        (time.seconds for time in profile.regions), reverse=True)


def test_profile_maps_regions_to_source_lines(compiled_and_profile) -> None:
    _, _, profile, _ = compiled_and_profile
    sources = [source for time in profile.regions for source in time.region.sources]
    ours = [source for source in sources if source.where.startswith(f"{Path(__file__).name}:")]
    assert any("SOURCE-FC1" in source.code for source in ours), sources
    assert any("SOURCE-FC2" in source.code for source in ours), sources
    text = profile.text(top=3)
    assert "ms per call" in text and "SOURCE-FC" in text and "outside regions" in text


def test_profiled_build_computes_the_same(compiled_and_profile) -> None:
    compiled, x, _, _ = compiled_and_profile
    expected = compiled(x.numpy())
    np.testing.assert_allclose(compiled._profiled(x.numpy()), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(expected, MLP_reference(x), rtol=1e-4, atol=1e-6)


def MLP_reference(x: torch.Tensor) -> np.ndarray:
    torch.manual_seed(0)
    torch.randn(16, 64)  # the same draws as the fixture, then the same weights
    with torch.no_grad():
        return MLP().eval()(x).numpy()


def test_profile_refuses_bad_runs_and_wrong_inputs(compiled_and_profile) -> None:
    compiled, x, _, _ = compiled_and_profile
    with pytest.raises(ProfileError, match="runs must be a positive integer"):
        compiled.profile(x.numpy(), runs=0)
    with pytest.raises(nnforge.InputError):
        compiled.profile(np.zeros((3, 3), np.float32))


def test_naive_lowering_is_profiled_too() -> None:
    """Without dispatch regions (optimize=False), each linalg op is a region."""
    x = torch.randn(4, 64)
    profile = nnforge.compile(MLP().eval(), (x,), optimize=False).profile(x, runs=2)
    assert profile.regions and not any(time.region.kind == "dispatch" for time in profile.regions)
    assert {"linalg.matmul", "linalg.generic"} <= {time.region.kind for time in profile.regions}
    assert all(time.seconds > 0 for time in profile.regions)
    assert sum(time.share for time in profile.regions) + profile.outside_share == pytest.approx(1.0, abs=1e-6)


def test_jax_function_with_a_loop_is_profiled() -> None:
    """A JaxModel profiles on the function's arguments; a loop is timed as one region."""
    jax = pytest.importorskip("jax", reason="jax is not installed (pip install 'nnforge[jax]')")

    def f(w, x):
        return jax.nn.softmax(jax.lax.fori_loop(0, 3, lambda i, h: jax.numpy.tanh(h @ w), x))

    w, x = np.full((16, 16), 0.1, np.float32), np.ones((4, 16), np.float32)
    profile = nnforge.compile(jax.jit(f), (w, x), threads=1).profile(w, x, runs=2)
    assert profile.model == "f"
    assert "scf.while" in {time.region.kind for time in profile.regions}
    assert all(time.seconds > 0 for time in profile.regions)


def test_loaded_libraries_are_not_profiled(compiled_and_profile, tmp_path: Path) -> None:
    compiled, x, _, _ = compiled_and_profile
    loaded = nnforge.load(compiled.save(tmp_path / "mlp.so"))
    with pytest.raises(ProfileError, match="loaded from a library cannot be profiled"):
        loaded.profile(x.numpy())


def test_cuda_profiles_are_refused_clearly() -> None:
    with pytest.raises(ProfileError, match="not available for CUDA models"):
        compile_profiled(MLP(), (torch.randn(2, 64),), target="cuda")


def test_html_page_is_self_contained(compiled_and_profile) -> None:
    _, _, profile, page = compiled_and_profile
    text = page.read_text()
    assert text == render(profile)
    assert not re.search(r"(src|href)=\"https?:", text) and "<link" not in text
    for time in profile.regions:
        assert f'id="node-{time.region.id}"' in text


def _dump_dom(page: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="nnforge-chromium-") as profile_folder:
        result = subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile_folder}", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_chromium_draws_every_region(compiled_and_profile) -> None:
    _, _, profile, page = compiled_and_profile
    dom = _dump_dom(page)
    count = len(profile.regions)
    # The page's script counts the region nodes the browser laid out with a size.
    assert f"{count} of {count} regions drawn" in dom, dom[:2000]
    hottest = profile.regions[0].region
    assert f'id="node-{hottest.id}"' in dom


LINEAR_MLIR = """
#map = affine_map<(d0, d1) -> (d0, d1)>
#bias = affine_map<(d0, d1) -> (d1)>
func.func @main(%x: tensor<32x64xf32>, %w: tensor<64x48xf32>, %b: tensor<48xf32>) -> tensor<32x48xf32> {
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty() : tensor<32x48xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%empty : tensor<32x48xf32>) -> tensor<32x48xf32>
  %mm = linalg.matmul ins(%x, %w : tensor<32x64xf32>, tensor<64x48xf32>) outs(%acc : tensor<32x48xf32>) -> tensor<32x48xf32>
  %y = linalg.generic {indexing_maps = [#map, #bias, #map], iterator_types = ["parallel", "parallel"]}
      ins(%mm, %b : tensor<32x48xf32>, tensor<48xf32>) outs(%empty : tensor<32x48xf32>) {
  ^bb0(%m: f32, %c: f32, %o: f32):
    %s = arith.addf %m, %c : f32
    %r = arith.maximumf %s, %zero : f32
    linalg.yield %r : f32
  } -> tensor<32x48xf32>
  return %y : tensor<32x48xf32>
}
"""


def test_cli_profile_prints_regions_and_writes_the_page(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = tmp_path / "linear.mlir"
    model.write_text(LINEAR_MLIR)
    page = tmp_path / "page.html"
    assert nnforge.cli.main(["profile", str(model), "--runs", "3", "--threads", "1", "-q",
                             "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert nnforge.cli.main(["profile", str(model), "--runs", "1", "--threads", "1", "--html", str(page)]) == 0
    assert "nnforge profile: profile-regions:" in capsys.readouterr().err  # stage times, stderr no terminal
    assert "linear.mlir" in out and "ms per call" in out and "MLIR line 7" in out
    assert re.search(r"#1 dispatch: fill \+ matmul \+ generic", out), out
    assert f"graph: {page}" in out and page.is_file()
    assert "dispatch: fill + matmul + generic" in page.read_text()


def test_cli_profile_refuses_cuda(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = tmp_path / "linear.mlir"
    model.write_text(LINEAR_MLIR)
    assert nnforge.cli.main(["profile", str(model), "--target", "cuda"]) == nnforge.cli.USER_ERROR
    assert "profiling is not available for CUDA models" in capsys.readouterr().err


def test_onnx_model_with_weights_is_profiled(tmp_path: Path) -> None:
    """An entry not named `main` (ONNX's main_graph) beside the profile's
    counters function, with a weight moved into the weights file."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((64, 128)).astype(np.float32)  # 32 KiB: a weights-file entry
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 128])],
        [numpy_helper.from_array(weight, "w")],
    )
    path = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    profile = nnforge.compile(str(path)).profile(x, runs=2)
    assert profile.regions and all(time.seconds > 0 for time in profile.regions)
