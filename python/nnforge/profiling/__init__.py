"""Profiling compiled models: where a model's time goes, region by region.

`nnforge profile MODEL` and `compiled.profile(*inputs)` build the model
again with timers around each dispatch region (`regions`: the pass
`nnf-profile-dispatch-regions` and what it timed), run it, and return a
`report.Profile`: each region's share of the time and the source lines it
came from, as text or as an HTML page of the model's graph (`html`).
See docs/profiling.md.
"""
