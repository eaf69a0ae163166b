"""Latency summaries."""

import math


def percentile(sorted_values: list, fraction: float) -> float | None:
    """Return a percentile of sorted values by the nearest-rank method.

    Args:
        sorted_values: The values, ascending.
        fraction: 0.5 for the median, 0.99 for p99.

    Returns:
        The value, or None when there are none.
    """
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize_ns(latencies_ns) -> dict:
    """Summarize latencies given in nanoseconds, in milliseconds.

    Args:
        latencies_ns: Any iterable of nanosecond latencies.

    Returns:
        ``n``, ``p50_ms``, ``p99_ms`` and ``max_ms`` (None when empty).
    """
    values = sorted(latencies_ns)

    def ms(value):
        return None if value is None else round(value / 1e6, 3)

    return {
        "n": len(values),
        "p50_ms": ms(percentile(values, 0.5)),
        "p99_ms": ms(percentile(values, 0.99)),
        "max_ms": ms(values[-1] if values else None),
    }


def ratio(value, reference, digits: int = 3) -> float | None:
    """Return value / reference, or None when either is missing or zero.

    Args:
        value: The numerator.
        reference: The denominator.
        digits: Rounding.
    """
    if value is None or not reference:
        return None
    return round(value / reference, digits)
