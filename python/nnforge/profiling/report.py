"""A measured profile: the time of each region of a model per call, its share
of the whole call, and the text report (the HTML page: `nnforge.profiling.html`)."""

from __future__ import annotations

from dataclasses import dataclass

from nnforge.profiling.regions import Region, RegionMap

# What runs between the regions: buffer allocation and release, copies
# bufferization inserted, reshapes, the entry and return.
OUTSIDE_LABEL = "outside regions (allocation, copies, reshapes)"
# The longest source line the text report prints (the page shows all).
SOURCE_CHARACTERS = 70


@dataclass(frozen=True)
class RegionTime:
    """A region's measured time: `seconds` per run, `calls` per run,
    `share` of the whole call (0 to 1)."""

    region: Region
    seconds: float
    calls: float
    share: float


@dataclass(frozen=True)
class Profile:
    """Where a model's time goes, measured over `runs` calls.

    `regions`: the time of each region, largest first; `outside`: the time of
    the call spent outside every region; `seconds`: one call's time (the
    shares of the regions and of `outside` add up to 1). `machine` names the
    CPU and threads it ran on; `model` what was profiled.
    """

    model: str
    machine: str
    runs: int
    seconds: float
    regions: tuple[RegionTime, ...]
    outside: float
    layout: RegionMap

    @classmethod
    def from_counters(
        cls, layout: RegionMap, counters: list[int], runs: int, model: str, machine: str
    ) -> Profile:
        """The profile of `runs` calls, from the counters of a profiled
        model (nanoseconds and calls, a pair per region id)."""
        total = counters[2 * layout.function.id] / runs / 1e9
        times = [
            RegionTime(
                region,
                seconds=counters[2 * region.id] / runs / 1e9,
                calls=counters[2 * region.id + 1] / runs,
                share=counters[2 * region.id] / counters[2 * layout.function.id] if total else 0.0,
            )
            for region in layout.regions
        ]
        times.sort(key=lambda time: time.seconds, reverse=True)
        outside = max(total - sum(time.seconds for time in times), 0.0)
        return cls(model, machine, runs, total, tuple(times), outside, layout)

    @property
    def outside_share(self) -> float:
        return self.outside / self.seconds if self.seconds else 0.0

    def text(self, top: int = 10) -> str:
        """The report: one call's time, then the `top` regions with their
        share, time, what they compute and the source lines they came from."""
        lines = [
            f"{self.model}: {self.seconds * 1e3:.3f} ms per call (mean of {self.runs} runs; {self.machine}), "
            f"{len(self.regions)} region{'' if len(self.regions) == 1 else 's'}",
            f"{'share':>7}  {'ms/call':>9}  {'region':<44} source",
        ]
        for time in self.regions[:top]:
            sources = "; ".join(_shorten(source.describe(), SOURCE_CHARACTERS) for source in time.region.sources[:2])
            more = len(time.region.sources) - 2
            if more > 0:
                sources += f" (+{more} more)"
            label = _shorten(f"#{time.region.id} {time.region.label}", 44)
            lines.append(f"{time.share:>7.1%}  {time.seconds * 1e3:>9.4f}  {label:<44} {sources}")
        rest = self.regions[top:]
        if rest:
            seconds = sum(time.seconds for time in rest)
            lines.append(f"{sum(time.share for time in rest):>7.1%}  {seconds * 1e3:>9.4f}  "
                         f"{len(rest)} more regions")
        lines.append(f"{self.outside_share:>7.1%}  {self.outside * 1e3:>9.4f}  {OUTSIDE_LABEL}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def _shorten(text: str, characters: int) -> str:
    return text if len(text) <= characters else text[:characters - 3] + "..."
