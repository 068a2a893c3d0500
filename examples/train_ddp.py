"""Data-parallel training of the tiny GPT-2 with nnforge's compiled module.

    torchrun --nproc-per-node 2 examples/train_ddp.py [--steps 10] [--eager] [--json losses.json]

Each process (rank) wraps the model in `DistributedDataParallel` (gloo
backend, CPU) and compiles it with `torch.compile(..., backend="nnforge")`;
each trains on its own shard of every global batch, DDP averaging the
gradients. `--eager` trains without compiling (the reference). Rank 0
prints the per-step losses (the mean over ranks) and writes them to
`--json`. Across machines: the same command on each with `--nnodes N
--node-rank I --rdzv-backend c10d --rdzv-endpoint HOST:PORT` (docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import training_workloads  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="adam")
    parser.add_argument("--eager", action="store_true", help="train without compiling (the reference)")
    parser.add_argument("--json", help="write rank 0's losses here")
    args = parser.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    workload = training_workloads.gpt2()  # seeded: the same weights on every rank
    model = DistributedDataParallel(workload.model)
    forward = model if args.eager else torch.compile(model, backend="nnforge")
    optimizer = training_workloads.optimizer(args.optimizer, model, workload)
    per_rank = workload.batch_size
    losses = []
    for step in range(args.steps):
        inputs, targets = workload.batch(step, per_rank * world)  # the global batch, sharded
        shard = slice(rank * per_rank, (rank + 1) * per_rank)
        optimizer.zero_grad()
        loss = workload.loss(forward(inputs[shard]), targets[shard])
        loss.backward()  # DDP all-reduces the gradients (mean over ranks)
        optimizer.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
        if rank == 0:
            print(f"step {step}: loss {losses[-1]:.6f}", flush=True)
    if rank == 0 and args.json:
        with open(args.json, "w") as file:
            json.dump({"world_size": world, "eager": args.eager, "losses": losses}, file)
    if rank == 0 and not args.eager:
        from nnforge.integrations import torch_backend

        print(f"nnforge backend: {torch_backend.stats()}", flush=True)
    # Every rank reaches this point before any tears gloo down: a rank that
    # destroys its process group while a peer is still connected can abort in
    # gloo's teardown ("terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
