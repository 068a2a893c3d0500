"""Tensor parallelism across processes: models split over N MPI ranks.

`nnforge.compile(model, example_inputs, ranks=N, sharding="auto")` splits a
PyTorch module's parameters over N ranks (`plan`), annotates the linalg IR
with upstream's `shard` dialect and partitions it into each rank's program
with MPI collectives (`partition`), and links one shared library holding
the program and every rank's weight slices (`build`). `nnforge.load` of such
a library joins the MPI job the process runs in (`mpi`) and passes the
rank's own slices (`slices`); `nnforge run --ranks N` starts the job
(`launch`). See docs/distributed.md.
"""
