"""Models split over MPI ranks (nnforge.distributed): 2 ranks on this machine.

Each rank of `mpiexec -n 2 python app.py` loads the saved model and
computes with its half of the weights; every rank's outputs must equal the
single-process model's. Errors (a sharding that does not divide a
dimension, a collective MLIR cannot lower, a job of the wrong size, no MPI,
a rank that fails) must be clear and never hang.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import nnforge
from nnforge.distributed import mpi, plan
from nnforge.distributed.plan import Packed, ShardingError

PYTHON = sys.executable
# A hung job fails the test instead of the whole suite.
JOB_TIMEOUT = 120


class MLP(torch.nn.Module):
    def __init__(self, features: int = 16, hidden: int = 32):
        super().__init__()
        self.fc1 = torch.nn.Linear(features, hidden)
        self.fc2 = torch.nn.Linear(hidden, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class EncoderLayer(torch.nn.Module):
    """A pre-norm transformer encoder layer: attention with separate
    query/key/value projections, then an MLP. `causal`: GPT-2's block (a
    causal mask, tanh GELU)."""

    def __init__(self, features: int = 32, heads: int = 4, hidden: int = 64, causal: bool = False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.norm1 = torch.nn.LayerNorm(features)
        self.query = torch.nn.Linear(features, features)
        self.key = torch.nn.Linear(features, features)
        self.value = torch.nn.Linear(features, features)
        self.out = torch.nn.Linear(features, features)
        self.norm2 = torch.nn.LayerNorm(features)
        self.fc1 = torch.nn.Linear(features, hidden)
        self.fc2 = torch.nn.Linear(hidden, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, sequence, features = x.shape
        size = features // self.heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, sequence, self.heads, size).transpose(1, 2)

        h = self.norm1(x)
        q, k, v = heads(self.query(h)), heads(self.key(h)), heads(self.value(h))
        scores = q @ k.transpose(-2, -1) / math.sqrt(size)
        if self.causal:
            mask = torch.ones(sequence, sequence, dtype=torch.bool).tril()
            scores = scores.masked_fill(~mask, float("-inf"))
        mixed = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(batch, sequence, features)
        x = x + self.out(mixed)
        hidden = self.fc1(self.norm2(x))
        hidden = torch.nn.functional.gelu(hidden, approximate="tanh" if self.causal else "none")
        return x + self.fc2(hidden)


class PackedAttention(torch.nn.Module):
    """Attention with one packed query/key/value projection, sliced in thirds."""

    def __init__(self, features: int = 32, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(features, 3 * features)
        self.out = torch.nn.Linear(features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, sequence, features = x.shape
        q, k, v = self.qkv(x).view(batch, sequence, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        mixed = torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
        return self.out(mixed.transpose(1, 2).reshape(batch, sequence, features))


class PackedBlock(torch.nn.Module):
    """A GPT-2 block as GPT-2 computes attention: one packed projection
    (c_attn) split in queries, keys and values, a causal mask, tanh GELU."""

    def __init__(self, features: int = 32, heads: int = 4, hidden: int = 64):
        super().__init__()
        self.heads = heads
        self.ln_1 = torch.nn.LayerNorm(features)
        self.c_attn = torch.nn.Linear(features, 3 * features)
        self.c_proj = torch.nn.Linear(features, features)
        self.ln_2 = torch.nn.LayerNorm(features)
        self.c_fc = torch.nn.Linear(features, hidden)
        self.mlp_proj = torch.nn.Linear(hidden, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, sequence, features = x.shape
        size = features // self.heads
        q, k, v = (t.view(batch, sequence, self.heads, size).transpose(1, 2)
                   for t in self.c_attn(self.ln_1(x)).split(features, dim=2))
        scores = q @ k.transpose(-2, -1) / math.sqrt(size)
        mask = torch.ones(sequence, sequence, dtype=torch.bool).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
        mixed = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(batch, sequence, features)
        x = x + self.c_proj(mixed)
        hidden = torch.nn.functional.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
        return x + self.mlp_proj(hidden)


def mpiexec(ranks: int, *command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(mpi.launcher()), "-n", str(ranks), *command], cwd=cwd, capture_output=True,
                          text=True, timeout=JOB_TIMEOUT)


@pytest.fixture(scope="module")
def mlp_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """An MLP compiled for 2 ranks and saved: (folder holding m.so and x.npy, x, torch's output)."""
    torch.manual_seed(0)
    model = MLP().eval()
    x = torch.randn(4, 16)
    compiled = nnforge.compile(model, (x,), ranks=2, sharding="auto")
    assert compiled.sharding == {"fc1.weight": 0, "fc1.bias": 0, "fc2.weight": 1}
    folder = tmp_path_factory.mktemp("mlp")
    compiled.save(folder / "m.so")
    np.save(folder / "x.npy", x.numpy())
    return folder, x.numpy(), model(x).detach().numpy()


APP = """
import sys
import numpy as np
import nnforge

model = nnforge.load("m.so")
y = model(np.load("x.npy"))
np.save(f"y{model.rank}.npy", y)
"""


def run_on_two_ranks(model: torch.nn.Module, compiled, x: torch.Tensor, folder: Path) -> None:
    """Saves `compiled` with `x`, runs it on 2 ranks: every rank's output must
    equal the single-process compiled model's."""
    compiled.save(folder / "m.so")
    np.save(folder / "x.npy", x.numpy())
    (folder / "app.py").write_text(APP)
    job = mpiexec(2, PYTHON, "app.py", cwd=folder)
    assert job.returncode == 0, job.stderr
    single = np.asarray(nnforge.compile(model, (x,))(x.numpy()))
    for rank in range(2):
        np.testing.assert_allclose(np.load(folder / f"y{rank}.npy"), single, rtol=1e-5, atol=1e-6)


def test_every_rank_computes_the_single_process_output(mlp_case):
    folder, _, expected = mlp_case
    (folder / "app.py").write_text(APP)
    job = mpiexec(2, PYTHON, "app.py", cwd=folder)
    assert job.returncode == 0, job.stderr
    for rank in range(2):
        np.testing.assert_allclose(np.load(folder / f"y{rank}.npy"), expected, rtol=1e-5, atol=1e-6)


def test_saved_model_holds_each_ranks_slices(mlp_case):
    folder, _, _ = mlp_case
    text = (folder / "app.py")
    text.write_text(textwrap.dedent("""
        import ctypes, nnforge
        from nnforge.distributed import slices
        model = nnforge.load("m.so")
        manifest = slices.manifest_of(ctypes.CDLL("./m.so"))
        if model.rank == 0:
            print({w.name: (w.shape, len(set(w.offsets))) for w in manifest.weights})
    """))
    job = mpiexec(2, PYTHON, "app.py", cwd=folder)
    assert job.returncode == 0, job.stderr
    layout = eval(job.stdout.splitlines()[0])
    # Split parameters: one half per rank, at two places; the rest stored once.
    assert layout == {"fc1.weight": ((16, 16), 2), "fc1.bias": ((16,), 2), "fc2.weight": ((16, 16), 2),
                      "fc2.bias": ((16,), 1)}



def test_parameters_the_program_only_transposes_are_stored_transposed(tmp_path):
    """A rank's linear weights are stored as its matmuls read them: no transposed copy per call."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).eval()
    nnforge.compile(model, (torch.randn(4, 16),), ranks=2, sharding="auto", dump_ir=tmp_path / "ir")
    partitioned = (tmp_path / "ir" / "02-partitioned.mlir").read_text()
    lowered = (tmp_path / "ir" / "03-nnf-to-linalg.mlir").read_text()
    assert partitioned.count("linalg.transpose") == 2
    assert "linalg.transpose" not in lowered
    # fc1's weight: [32, 16] per rank, taken as [16, 32]; fc2's: [8, 32] taken as [32, 8].
    assert "tensor<16x32xf32>" in lowered
    assert "tensor<32x8xf32>" in lowered


def test_parameters_matmuls_read_are_stored_as_panels(tmp_path):
    """A rank's large linear weights are stored in the column panels its matmuls read (as a
    single process packs its constant weights): the program takes them packed and copies
    no parameter per call; every rank computes the single-process model's output."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 512)).eval()
    x = torch.randn(4, 512)
    compiled = nnforge.compile(model, (x,), ranks=2, sharding="auto", dump_ir=tmp_path / "ir")
    fused = next((tmp_path / "ir").glob("*-dispatch-regions.mlir")).read_text()
    # fc1's weight: [512, 512] per rank, taken transposed ([K, N] = [512, 512]), fc2's the
    # same: each [N / 32, K, 32] panels, nothing packed when called.
    signature = fused[fused.index("func.func"):fused.index("{\n", fused.index("func.func"))]
    assert signature.count("tensor<16x512x32xf32> {bufferization.writable = false, nnf.panels = 32 : i64}") == 2
    assert "nnf.layout_free" not in fused
    assert fused.count("tensor<16x512x32xf32>") == 4  # the two arguments, each read once
    run_on_two_ranks(model, compiled, x, tmp_path)


def test_cli_runs_on_ranks_and_writes_the_outputs_once(mlp_case, tmp_path):
    folder, _, expected = mlp_case
    out = tmp_path / "out"
    run = subprocess.run([PYTHON, "-m", "nnforge.cli", "run", "--ranks", "2", str(folder / "m.so"),
                          "--input", f"input0={folder / 'x.npy'}", "--output", str(out)],
                         capture_output=True, text=True, timeout=JOB_TIMEOUT)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 1, run.stdout
    np.testing.assert_allclose(np.load(out / "output0.npy"), expected, rtol=1e-5, atol=1e-6)


def test_wrong_number_of_ranks_is_an_error(mlp_case):
    folder, _, _ = mlp_case
    (folder / "app.py").write_text(APP)
    job = mpiexec(3, PYTHON, "app.py", cwd=folder)
    assert job.returncode != 0
    assert "compiled for 2 ranks, but this process runs in an MPI job of 3" in job.stderr
    alone = subprocess.run([PYTHON, "app.py"], cwd=folder, capture_output=True, text=True, timeout=JOB_TIMEOUT)
    assert alone.returncode != 0 and "MPI job of 1" in alone.stderr


@pytest.mark.parametrize("failure", ["raise", "exit"])
def test_a_failing_rank_ends_the_job(mlp_case, failure):
    """Rank 1 fails before the collective; rank 0 must not wait for it forever."""
    folder, _, _ = mlp_case
    script = folder / f"fail_{failure}.py"
    script.write_text(textwrap.dedent(f"""
        import os
        import numpy as np
        import nnforge
        model = nnforge.load("m.so")
        if model.rank == 1:
            if {failure!r} == "raise":
                raise RuntimeError("rank 1 fails")
            os._exit(3)
        model(np.load("x.npy"))
        model(np.load("x.npy"))
    """))
    job = mpiexec(2, PYTHON, script.name, cwd=folder)
    assert job.returncode != 0


def transformer_case(folder: Path, ranks: int, causal: bool) -> tuple[np.ndarray, np.ndarray]:
    """EncoderLayer (`causal`: a GPT-2 block) on a batch of 2 compiled for
    `ranks` ranks, saved in `folder` with its input: (torch's output, the
    single-process compiled model's)."""
    torch.manual_seed(0)
    model = EncoderLayer(causal=causal).eval()
    x = torch.randn(2, 6, 32)
    compiled = nnforge.compile(model, (x,), ranks=ranks, sharding="auto")
    heads = {f"{name}.{part}": 0 for name in ("query", "key", "value") for part in ("weight", "bias")}
    assert compiled.sharding == {**heads, "out.weight": 1, "fc1.weight": 0, "fc1.bias": 0, "fc2.weight": 1}
    # One all-reduce of the [2, 6, 32] f32 activations after attention, one after the MLP.
    assert compiled.collectives == [("allreduce", 2 * 6 * 32 * 4)] * 2
    compiled.save(folder / "m.so")
    np.save(folder / "x.npy", x.numpy())
    (folder / "app.py").write_text(APP)
    with torch.no_grad():
        expected = model(x).numpy()
    return expected, np.asarray(nnforge.compile(model, (x,))(x.numpy()))


@pytest.mark.parametrize("causal", [False, True], ids=["encoder_layer", "gpt2_block"])
def test_transformer_block_splits_heads_and_mlp(causal, tmp_path):
    """Attention split by heads and the MLP by hidden features over 2 ranks:
    every rank's output equals the single-process model's. (Against PyTorch
    the tolerance is the CPU target's: its tanh GELU differs from PyTorch's
    by up to 5e-5, on one rank as on two.)"""
    expected, single = transformer_case(tmp_path, 2, causal)
    job = mpiexec(2, PYTHON, "app.py", cwd=tmp_path)
    assert job.returncode == 0, job.stderr
    for rank in range(2):
        y = np.load(tmp_path / f"y{rank}.npy")
        np.testing.assert_allclose(y, single, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 if causal else 1e-6)


def packed_case(folder: Path, ranks: int) -> np.ndarray:
    """PackedBlock on a batch of 2 compiled for `ranks` ranks, saved in
    `folder` with its input: the single-process compiled model's output."""
    torch.manual_seed(0)
    model = PackedBlock().eval()
    x = torch.randn(2, 6, 32)
    compiled = nnforge.compile(model, (x,), ranks=ranks, sharding="auto")
    assert compiled.sharding == {"c_attn.weight": Packed(0, 3), "c_attn.bias": Packed(0, 3), "c_proj.weight": 1,
                                 "c_fc.weight": 0, "c_fc.bias": 0, "mlp_proj.weight": 1}
    assert compiled.collectives == [("allreduce", 2 * 6 * 32 * 4)] * 2
    compiled.save(folder / "m.so")
    np.save(folder / "x.npy", x.numpy())
    (folder / "app.py").write_text(APP)
    return np.asarray(nnforge.compile(model, (x,))(x.numpy()))


def test_packed_projection_splits_each_part_by_heads(tmp_path):
    """GPT-2's packed c_attn over 2 ranks: each rank holds its heads' query,
    key and value rows (a [3, 16, 32] slice of the weight taken as [3, 32,
    32]) and computes the single-process model's output."""
    single = packed_case(tmp_path, 2)
    job = mpiexec(2, PYTHON, "app.py", cwd=tmp_path)
    assert job.returncode == 0, job.stderr
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"y{rank}.npy"), single, rtol=1e-5, atol=1e-6)


def test_auto_groups_attention_and_mlp_by_dataflow():
    """q/k/v -> out-projection (heads) and fc1 -> fc2, found from the exported
    program; then the pairs alone, to fall back on."""
    split = {f"{name}.{part}": 0 for name in ("query", "key", "value") for part in ("weight", "bias")}
    pair = {"fc1.weight": 0, "fc1.bias": 0, "fc2.weight": 1}
    for causal in (False, True):
        choices = plan.plan(EncoderLayer(causal=causal).eval(), (torch.randn(2, 6, 32),), 2, "auto")
        assert choices == [{**split, "out.weight": 1, **pair}, pair]


def test_auto_finds_packed_projections_split_in_parts():
    """c_attn(x).split(E, dim=-1) (or chunk(3, -1)) -> heads -> c_proj is a
    group, c_attn split Packed in 3 parts; with heads the ranks do not split
    evenly, the MLP pair alone remains to fall back on."""
    pair = {"c_fc.weight": 0, "c_fc.bias": 0, "mlp_proj.weight": 1}
    attention = {"c_attn.weight": Packed(0, 3), "c_attn.bias": Packed(0, 3), "c_proj.weight": 1}
    x = torch.randn(2, 6, 32)
    assert plan.plan(PackedBlock().eval(), (x,), 2, "auto") == [{**attention, **pair}, pair]
    with pytest.raises(ShardingError, match="parts of size 32, which does not split evenly over 3 ranks"):
        nnforge.compile(PackedBlock(), (x,), ranks=3, sharding={"c_attn.weight": Packed(0, 3)})


def test_packed_projection_reshaped_before_slicing(tmp_path):
    """A packed projection viewed as [.., 3, heads, size] before it is cut
    (PackedAttention: view, permute, unbind) is split Packed by "auto":
    by heads, the single-process model's output. A block split of its rows
    is no split of heads: a CompileError."""
    torch.manual_seed(0)
    model = PackedAttention().eval()
    x = torch.randn(2, 6, 32)
    attention = {"qkv.weight": Packed(0, 3), "qkv.bias": Packed(0, 3), "out.weight": 1}
    assert plan.plan(model, (x,), 2, "auto") == [attention, {}]
    with pytest.raises(nnforge.CompileError):
        nnforge.compile(model, (x,), ranks=2, sharding={"qkv.weight": 0, "qkv.bias": 0, "out.weight": 1})
    compiled = nnforge.compile(model, (x,), ranks=2, sharding="auto")
    assert compiled.sharding == attention
    assert compiled.collectives == [("allreduce", 2 * 6 * 32 * 4)]
    run_on_two_ranks(model, compiled, x, tmp_path)


class MultiheadAttention(torch.nn.Module):
    """torch.nn.MultiheadAttention as self-attention. `need_weights` (its
    default): it also computes the attention weights, averaged over heads,
    on scores with the heads collapsed with the batch (`bmm`), and this
    module returns only the attention's output."""

    def __init__(self, batch_first: bool, need_weights: bool):
        super().__init__()
        self.need_weights = need_weights
        self.attention = torch.nn.MultiheadAttention(32, 4, batch_first=batch_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=self.need_weights)[0]


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
def test_auto_splits_multihead_attention_by_heads(batch_first, need_weights):
    """torch.nn.MultiheadAttention's packed in_proj_weight (one linear layer
    whose output is unflattened as [.., 3, E], transposed, and selected in
    q, k and v) -> heads -> out_proj is a group, in_proj split Packed in 3."""
    x = torch.randn(2, 6, 32)
    attention = {"attention.in_proj_weight": Packed(0, 3), "attention.in_proj_bias": Packed(0, 3),
                 "attention.out_proj.weight": 1}
    assert plan.plan(MultiheadAttention(batch_first, need_weights).eval(), (x,), 2, "auto") == [attention, {}]


def test_multihead_attention_on_collapsed_heads_splits_by_heads(tmp_path):
    """torch.nn.MultiheadAttention called as by default (need_weights): its
    scores and softmax on [batch * heads, S, S] run on 2 of the 4 heads per
    rank ([2, 2, 6, 6]), one all-reduce after out_proj; every rank computes
    the single-process model's output."""
    torch.manual_seed(0)
    model = MultiheadAttention(batch_first=False, need_weights=True).eval()
    x = torch.randn(6, 2, 32)
    compiled = nnforge.compile(model, (x,), ranks=2, sharding="auto", dump_ir=tmp_path / "ir")
    assert compiled.sharding == {"attention.in_proj_weight": Packed(0, 3), "attention.in_proj_bias": Packed(0, 3),
                                 "attention.out_proj.weight": 1}
    assert compiled.collectives == [("allreduce", 6 * 2 * 32 * 4)]
    partitioned = (tmp_path / "ir" / "02-partitioned.mlir").read_text()
    assert "tensor<2x2x6x6xf32>" in partitioned
    assert "tensor<2x4x6x6xf32>" not in partitioned and "tensor<8x6x6xf32>" not in partitioned
    run_on_two_ranks(model, compiled, x, tmp_path)


def test_auto_leaves_attention_whole_when_heads_do_not_split(caplog):
    """4 heads over 8 ranks: attention stays whole (the MLP pair splits), with
    a warning that says why."""
    x = torch.randn(2, 6, 32)
    model = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True).eval()
    with caplog.at_level("WARNING", logger="nnforge.compiler"):
        choices = plan.plan(model, (x,), 8, "auto")
    assert choices == [{"linear1.weight": 0, "linear1.bias": 0, "linear2.weight": 1}]
    assert ("attention self_attn.in_proj_weight -> self_attn.out_proj.weight stays whole "
            "(4 heads do not split evenly over 8 ranks)") in caplog.text


def test_transformer_encoder_layer_splits_attention_by_heads(tmp_path):
    """torch.nn.TransformerEncoderLayer over 2 ranks: MultiheadAttention's
    packed in_proj split by heads (each rank's attention takes 2 of the 4
    heads: no replicated [2, 4, 6, 6] scores), the out-projection by input
    features, then the MLP: one all-reduce after each; every rank computes the
    single-process model's output."""
    torch.manual_seed(0)
    model = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True).eval()
    x = torch.randn(2, 6, 32)
    compiled = nnforge.compile(model, (x,), ranks=2, sharding="auto", dump_ir=tmp_path / "ir")
    assert compiled.sharding == {"self_attn.in_proj_weight": Packed(0, 3), "self_attn.in_proj_bias": Packed(0, 3),
                                 "self_attn.out_proj.weight": 1, "linear1.weight": 0, "linear1.bias": 0,
                                 "linear2.weight": 1}
    assert compiled.collectives == [("allreduce", 2 * 6 * 32 * 4)] * 2
    partitioned = (tmp_path / "ir" / "02-partitioned.mlir").read_text()
    assert "tensor<2x2x6x6xf32>" in partitioned and "tensor<2x4x6x6xf32>" not in partitioned
    run_on_two_ranks(model, compiled, x, tmp_path)


def test_axis_that_does_not_divide_is_an_error():
    with pytest.raises(ShardingError, match="size 32, which does not split evenly over 3 ranks"):
        nnforge.compile(MLP(), (torch.randn(4, 16),), ranks=3, sharding={"fc1.weight": 0})
    with pytest.raises(ShardingError, match="no axis 2"):
        nnforge.compile(MLP(), (torch.randn(4, 16),), ranks=2, sharding={"fc1.weight": 2})
    with pytest.raises(ShardingError, match="parameters the model does not have: 'fc3.weight'"):
        nnforge.compile(MLP(), (torch.randn(4, 16),), ranks=2, sharding={"fc3.weight": 0})


def test_collective_without_mpi_lowering_is_an_error_not_an_abort():
    """fc1 split by input features needs a collective besides all_reduce
    (an all_gather), which MLIR 22.1.8 cannot lower to MPI: a CompileError."""
    with pytest.raises(nnforge.CompileError, match=r"'shard\.all_\w+' has no lowering to MPI"):
        nnforge.compile(MLP(), (torch.randn(4, 16),), ranks=2, sharding={"fc1.weight": 1})


def test_without_mpi_says_what_to_install(monkeypatch):
    monkeypatch.delenv(mpi.LIBRARY_VARIABLE, raising=False)
    monkeypatch.setattr(mpi, "_prefixes", lambda: [])
    with pytest.raises(mpi.MPIMissingError, match=r"pip install 'nnforge\[distributed\]'"):
        nnforge.compile(MLP(), (torch.randn(4, 16),), ranks=2)


@pytest.mark.skipif(not os.environ.get("NNFORGE_SLOW_TESTS"), reason="4 ranks on a 2-core machine: set NNFORGE_SLOW_TESTS=1")
def test_four_ranks_two_pairs_many_calls(tmp_path):
    """Two Megatron pairs over 4 ranks, called 3000 times (more communicators
    than MPICH has, were one split off the world per call)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64),
                                torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64)).eval()
    x = torch.randn(8, 64)
    compiled = nnforge.compile(model, (x,), ranks=4)
    assert compiled.collectives == [("allreduce", 8 * 64 * 4)] * 2
    compiled.save(tmp_path / "m.so")
    np.save(tmp_path / "x.npy", x.numpy())
    (tmp_path / "app.py").write_text(textwrap.dedent("""
        import numpy as np
        import nnforge
        model = nnforge.load("m.so")
        x = np.load("x.npy")
        for _ in range(3000):
            y = model(x)
        np.save(f"y{model.rank}.npy", y)
    """))
    job = subprocess.run([str(mpi.launcher()), "-n", "4", PYTHON, "app.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert job.returncode == 0, job.stderr
    for rank in range(4):
        np.testing.assert_allclose(np.load(tmp_path / f"y{rank}.npy"), model(x).detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not os.environ.get("NNFORGE_SLOW_TESTS"), reason="4 ranks on a 2-core machine: set NNFORGE_SLOW_TESTS=1")
def test_four_ranks_packed_projection(tmp_path):
    """One head's query, key and value rows of c_attn per rank."""
    single = packed_case(tmp_path, 4)
    job = subprocess.run([str(mpi.launcher()), "-n", "4", PYTHON, "app.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert job.returncode == 0, job.stderr
    for rank in range(4):
        np.testing.assert_allclose(np.load(tmp_path / f"y{rank}.npy"), single, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not os.environ.get("NNFORGE_SLOW_TESTS"), reason="4 ranks on a 2-core machine: set NNFORGE_SLOW_TESTS=1")
@pytest.mark.parametrize("causal", [False, True], ids=["encoder_layer", "gpt2_block"])
def test_four_ranks_transformer_block(causal, tmp_path):
    """One head and a quarter of the MLP per rank."""
    expected, single = transformer_case(tmp_path, 4, causal)
    job = subprocess.run([str(mpi.launcher()), "-n", "4", PYTHON, "app.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert job.returncode == 0, job.stderr
    for rank in range(4):
        y = np.load(tmp_path / f"y{rank}.npy")
        np.testing.assert_allclose(y, single, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 if causal else 1e-6)


@pytest.mark.skipif(not os.environ.get("NNFORGE_SLOW_TESTS"), reason="4 ranks on a 2-core machine: set NNFORGE_SLOW_TESTS=1")
def test_four_ranks_transformer_encoder_layer(tmp_path):
    """torch.nn.TransformerEncoderLayer with one of its 4 heads per rank."""
    torch.manual_seed(0)
    model = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True).eval()
    x = torch.randn(2, 6, 32)
    compiled = nnforge.compile(model, (x,), ranks=4, sharding="auto")
    assert compiled.sharding["self_attn.in_proj_weight"] == Packed(0, 3)
    assert compiled.collectives == [("allreduce", 2 * 6 * 32 * 4)] * 2
    compiled.save(tmp_path / "m.so")
    np.save(tmp_path / "x.npy", x.numpy())
    (tmp_path / "app.py").write_text(APP)
    job = subprocess.run([str(mpi.launcher()), "-n", "4", PYTHON, "app.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert job.returncode == 0, job.stderr
    single = np.asarray(nnforge.compile(model, (x,))(x.numpy()))
    for rank in range(4):
        np.testing.assert_allclose(np.load(tmp_path / f"y{rank}.npy"), single, rtol=1e-5, atol=1e-6)
