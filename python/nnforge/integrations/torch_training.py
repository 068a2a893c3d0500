"""Training through `torch.compile(model, backend="nnforge")`: AOTAutograd's
forward and backward graphs, each compiled by nnforge.

When a graph dynamo captures needs autograd (an input requires grad, grad
mode on), `nnforge.integrations.torch_backend` hands it to AOTAutograd
(`torch._dynamo.backends.common.aot_autograd`, core-ATen decompositions),
which splits it into a forward graph (the outputs, then the activations the
backward needs) and a backward graph, functional and in ATen ops. Each is
compiled like an inference graph: traced again with static shapes for the
inputs it is called with (`make_fx`, torch-mlir's decompositions), imported
with torch-mlir's `stateless_fx_import`, lowered by the same pipelines, one
compiled model per distinct set of input shapes (`MAX_SPECIALIZATIONS` at
most: `specialized_graph`), called on the tensors' memory and returning
tensors over the buffers it allocated (`specialized_graph.TensorCall`).
AOTAutograd's own wrappers do the rest as for any backend: gradients into
`.grad`, mutated buffers (BatchNorm's running statistics) written back.

Dropout draws its masks from PyTorch's generator exactly as eager PyTorch
does (`bernoulli_(1 - p)` on a tensor of the input's shape, one per dropout
in program order) before the compiled forward runs, which takes them as
inputs: a seeded run drops the same elements as eager. Other random ops make
the graph run eagerly (a fallback, with its reason).

A graph nnforge cannot compile runs as AOTAutograd gave it, eagerly, after
one warning; `nnforge.integrations.torch_backend.stats()` counts both.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from nnforge.errors import NNForgeError
from nnforge.integrations import batch_norm, gradients
from nnforge.integrations.specialized_graph import (
    GraphFallback,
    SpecializedGraph,
    TensorCall,
    one_line,
    unsupported_tensor,
)

_aten = torch.ops.aten


def _key(arguments: Sequence[Any]) -> tuple:
    """What a compiled graph is specialised for: the tensors' shapes and
    dtypes, the values of other arguments. (Devices and layouts are fixed
    per graph: dynamo guards them for the forward, autograd gives the
    backward gradients like the outputs; `unsupported` checks them when a
    specialisation is built.)"""
    return tuple([
        (value.shape, value.dtype) if isinstance(value, torch.Tensor)
        else value if value is None or isinstance(value, (int, float, bool)) else type(value)
        for value in arguments
    ])


def _unsupported_argument(value: Any) -> str | None:
    """Why nnforge cannot take this graph argument, or None."""
    if isinstance(value, torch.Tensor):
        return unsupported_tensor(value)
    if value is None or isinstance(value, (int, float, bool)):
        return None
    return f"an input is a {type(value).__name__}, not a tensor or number"


class _Dropout:
    """One dropout of a forward graph: the mask eager PyTorch would draw."""

    def __init__(self, like: torch.Tensor, p: float):
        self.shape, self.strides, self.dtype, self.p = tuple(like.shape), like.stride(), like.dtype, p

    def draw(self) -> torch.Tensor:
        # As at::dropout on the CPU: empty_like(input).bernoulli_(1 - p),
        # the input's strides included (the numbers are drawn in memory order).
        return torch.empty_strided(self.shape, self.strides, dtype=self.dtype).bernoulli_(1 - self.p)


def _draws_mask(node: torch.fx.Node) -> bool:
    """Whether eager PyTorch draws random numbers for this native_dropout."""
    x, p = node.args[0], node.args[1]
    train = node.args[2] if len(node.args) > 2 else node.kwargs.get("train")
    value = x.meta["val"]
    return train is not False and 0 < p < 1 and value.numel() > 0


def _masks_as_inputs(graph_module: torch.fx.GraphModule) -> list[_Dropout]:
    """Rewrites each native_dropout of a static graph into arithmetic on a
    mask taken as a new input (appended, in program order); returns them.

    native_dropout's results are (x * mask / (1 - p), mask as bool); eager
    PyTorch returns x itself for p = 0, zeros for p = 1 and no mask drawn.
    """
    graph = graph_module.graph
    last_input = [node for node in graph.nodes if node.op == "placeholder"][-1]
    dropouts: list[_Dropout] = []
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not _aten.native_dropout.default:
            continue
        x, p = node.args[0], float(node.args[1])
        value = x.meta["val"]
        with graph.inserting_before(node):
            if _draws_mask(node):
                with graph.inserting_after(last_input):
                    mask = graph.placeholder(f"dropout_mask_{len(dropouts)}")
                last_input = mask
                dropouts.append(_Dropout(value, p))
                noise = graph.call_function(_aten.div.Scalar, (mask, 1 - p))
                output = graph.call_function(_aten.mul.Tensor, (x, noise))
                kept = graph.call_function(_aten.ne.Scalar, (mask, 0))
            else:
                train = node.args[2] if len(node.args) > 2 else node.kwargs.get("train")
                drop_all = train is not False and p >= 1
                output = graph.call_function(_aten.mul.Scalar, (x, 0.0 if drop_all else 1.0))
                kept = graph.call_function(
                    _aten.full_like.default, (x, not drop_all), {"dtype": torch.bool}
                )
        for user in list(node.users):
            if user.target is not operator.getitem:
                raise NotImplementedError(f"native_dropout used by {user.target}")
            user.replace_all_uses_with(output if user.args[1] == 0 else kept)
            graph.erase_node(user)
        graph.erase_node(node)
    graph_module.recompile()
    return dropouts


def _random_ops(graph_module: torch.fx.GraphModule) -> list[str]:
    """The random ops (other than dropout) a graph holds."""
    return sorted({
        str(node.target)
        for node in graph_module.graph.nodes
        if node.op == "call_function"
        and isinstance(node.target, torch._ops.OpOverload)
        and torch.Tag.nondeterministic_seeded in node.target.tags
        and node.target is not _aten.native_dropout.default
    })


class _Specialization:
    """An AOTAutograd graph compiled for one set of input shapes.

    The compiled model takes the graph's tensor inputs (then the dropout
    masks) and returns its tensor outputs that are not inputs; numbers the
    graph returns, `None`s (no gradient) and inputs returned as they are go
    around it.
    """

    def __init__(self, graph_module: torch.fx.GraphModule, arguments: Sequence[Any], what: str):
        import nnforge
        from nnforge.importers import torch_frontend

        self.tensor_positions = [i for i, v in enumerate(arguments) if isinstance(v, torch.Tensor)]
        # Per output of the graph: ("compiled", index), ("input", position) or ("value", v).
        self.slots: list[tuple[str, Any]] = []
        static = self._trace(graph_module, list(arguments))
        random = _random_ops(static)
        if random:
            raise GraphFallback(
                f"nnforge cannot compile it: random ops {', '.join(random)} (nnforge draws dropout masks only)"
            )
        self.dropouts = _masks_as_inputs(static)
        # Masks' stand-ins (drawing them would take numbers from the generator).
        masks = [torch.empty_strided(d.shape, d.strides, dtype=d.dtype) for d in self.dropouts]
        tensors = [arguments[i].detach() for i in self.tensor_positions] + masks
        if self.dropouts:
            static = self._retrace(static, tensors)
        self.call = TensorCall(nnforge.compile(torch_frontend.import_fx_graph(static, what)), tensors)
        # The common case, without per-call shuffling: every argument a
        # tensor, every output computed by the compiled model, in order.
        self.numbers_in = len(self.tensor_positions) != len(arguments)
        self.all_compiled = self.slots == [("compiled", i) for i in range(len(self.slots))]

    def _trace(self, graph_module: torch.fx.GraphModule, arguments: list[Any]) -> torch.fx.GraphModule:
        """The graph for these argument shapes: tensors in, new tensors out, static."""
        from torch.fx.experimental.proxy_tensor import make_fx

        from nnforge.importers import torch_frontend

        tensor_positions = self.tensor_positions
        slots = self.slots

        def static_graph(*tensors: torch.Tensor) -> list[torch.Tensor]:
            filled = list(arguments)
            for position, tensor in zip(tensor_positions, tensors):
                filled[position] = tensor
            inputs = {id(tensor): position for position, tensor in zip(tensor_positions, tensors)}
            results: list[torch.Tensor] = []
            slots.clear()
            for output in graph_module(*filled):
                if isinstance(output, torch.Tensor) and id(output) in inputs:
                    slots.append(("input", inputs[id(output)]))
                elif isinstance(output, torch.Tensor):
                    slots.append(("compiled", len(results)))
                    results.append(output)
                else:
                    slots.append(("value", output))
            return results

        tensors = [arguments[i].detach() for i in tensor_positions]
        with torch_frontend.TRACING_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return make_fx(static_graph, _decompositions(), tracing_mode="fake")(*tensors)

    @staticmethod
    def _retrace(graph_module: torch.fx.GraphModule, tensors: list[torch.Tensor]) -> torch.fx.GraphModule:
        """The rewritten graph traced again, for the shapes and types of its new nodes."""
        from torch.fx.experimental.proxy_tensor import make_fx

        from nnforge.importers import torch_frontend

        with torch_frontend.TRACING_LOCK:
            return make_fx(graph_module, tracing_mode="fake")(*tensors)

    def __call__(self, arguments: Sequence[Any]) -> list[Any]:
        tensors = [arguments[i] for i in self.tensor_positions] if self.numbers_in else arguments
        if self.dropouts:
            tensors = [*tensors, *(dropout.draw() for dropout in self.dropouts)]
        outputs = self.call(tensors)
        if self.all_compiled:
            return outputs
        results = []
        for kind, value in self.slots:
            if kind == "compiled":
                results.append(outputs[value])
            elif kind == "input":
                results.append(arguments[value])
            else:
                results.append(value)
        return results


def _decompositions() -> dict:
    """torch-mlir's decompositions for the static trace, dropout kept (drawn
    eagerly), gradients of embeddings and max pooling without scatter ops."""
    from nnforge.importers import torch_frontend

    table = batch_norm.in_double(gradients.without_scatter(torch_frontend.decomposition_table()))
    table.pop(_aten.native_dropout.default, None)
    return table


class AOTGraph(SpecializedGraph):
    """An AOTAutograd graph (forward, backward or inference) compiled by
    nnforge per input shapes, or run eagerly after one warning."""

    def __init__(self, graph_module: torch.fx.GraphModule, kind: str):
        super().__init__(kind)
        # AOTAutograd calls it with the list of arguments. An instance
        # attribute: the wrapper dynamo puts around a backward copies the
        # instance's __dict__, not its class's attributes.
        self._boxed_call = True
        self.graph_module = graph_module

    unsupported = staticmethod(_unsupported_argument)
    key = staticmethod(_key)

    def build(self, arguments: Sequence[Any]) -> _Specialization:
        return _Specialization(self.graph_module, arguments, f"the {self.kind} graph")

    def __call__(self, arguments: list[Any]) -> Any:
        specialization = self.specialization(arguments)
        if specialization is not None:
            try:
                return specialization(arguments)
            except NNForgeError as error:
                self.fall_back(f"running the compiled model failed: {one_line(error)}")
        return self.graph_module(*arguments)


def _attention_as_math(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None, enable_gqa=False):
    """scaled_dot_product_attention as matmuls and softmax, differentiated as
    such: the fused CPU kernel's backward is an op torch-mlir cannot import."""
    return _aten._scaled_dot_product_attention_math(
        query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa
    )[0]


def _attention_in_math(graph_module: torch.fx.GraphModule) -> None:
    """Has the dynamo graph call `_attention_as_math` for attention."""
    attention = (torch._C._nn.scaled_dot_product_attention, torch.nn.functional.scaled_dot_product_attention)
    changed = False
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and node.target in attention:
            node.target = _attention_as_math
            changed = True
    if changed:
        graph_module.recompile()


def _compiler(kind: str) -> Callable[[torch.fx.GraphModule, Sequence[Any]], AOTGraph]:
    def compile_graph(graph_module: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> AOTGraph:
        return AOTGraph(graph_module, kind)

    return compile_graph


def training_backend(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
    """The dynamo graph through AOTAutograd, its graphs compiled by nnforge."""
    from torch._decomp import core_aten_decompositions
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.partitioners import min_cut_rematerialization_partition

    _attention_in_math(gm)
    # The embedding's gradient stays one op until the static trace (`gradients`).
    decompositions = core_aten_decompositions()
    decompositions.pop(_aten.embedding_dense_backward.default, None)
    # Batch norm's backward too: it sums in f64 (`batch_norm`).
    decompositions.pop(_aten.native_batch_norm_backward.default, None)
    # Inductor's partition: the backward recomputes what is cheap to recompute
    # (masks, casts, elementwise ops) instead of the forward saving it; fewer
    # activations go from the forward's outputs to the backward's inputs.
    backend = aot_autograd(
        partition_fn=min_cut_rematerialization_partition,
        fw_compiler=_compiler("forward"),
        bw_compiler=_compiler("backward"),
        inference_compiler=_compiler("inference"),
        decompositions=decompositions,
    )
    return backend(gm, example_inputs)
