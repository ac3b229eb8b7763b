"""Latency samples and their summary (nearest-rank percentiles, milliseconds)."""

import math
from dataclasses import asdict, dataclass
from typing import Any


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank: the smallest sample with at least q of the samples at or below it."""
    if not sorted_values:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Summary:
    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> "Summary":
        ms = sorted(s * 1000 for s in seconds)
        return cls(
            n=len(ms),
            p50_ms=percentile(ms, 0.50),
            p99_ms=percentile(ms, 0.99),
            mean_ms=sum(ms) / len(ms),
            min_ms=ms[0],
            max_ms=ms[-1],
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}
