"""nnforge's fuzz and bad-input suite.

Generators of inputs a hostile or careless user could give nnforge, in
families (`families.FAMILIES`): malformed ONNX models (`onnx_models`),
mutated MLIR through nnforge-opt and nnforge.compile (`ir_mutations`),
wrong and odd run-time inputs (`run_inputs`), damaged saved models
(`artifacts`), concurrent use (`concurrency`), API and command-line misuse
(`api_misuse`). Every case is deterministic in (family, seed, index) and
runs in a child process with a time limit (`runner`, `worker`); its
outcome (`outcomes`) is ok, clean (an NNForgeError), no_oracle, or one of
the failures: unclean (another exception), wrong (differs from
onnxruntime or numpy), hang, crash. `python -m test.fuzz` runs it;
test/python/test_fuzz.py runs a small fixed subset in CI. See
docs/reliability.md.
"""
