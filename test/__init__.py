"""nnforge's test suites: lit tests (*.mlir), pytest (python/) and the fuzz suite (fuzz/).

A package so that the fuzz suite runs as `python -m test.fuzz` from the
repository root (it then shadows the standard library's `test` package).
"""
