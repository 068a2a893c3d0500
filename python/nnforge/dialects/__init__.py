"""Python bindings of nnforge's dialects."""
