"""The plot of delivery latency (p50, p99) against offered load."""

from pathlib import Path


def latency_against_load(curves: dict, path: Path) -> Path:
    """Draw p50 and p99 against offered messages per second, per target.

    Args:
        curves: Scenario -> target -> load points (``offered_per_s``,
            ``p50_ms``, ``p99_ms``).
        path: The PNG to write.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    points_by_target = curves.get("private") or next(iter(curves.values()))
    figure, axes = pyplot.subplots(figsize=(8, 5))
    colours = {"chatd": "tab:blue", "relay": "tab:orange"}
    for target, points in points_by_target.items():
        points = [p for p in points if p["p50_ms"] is not None]
        xs = [p["offered_per_s"] for p in points]
        colour = colours.get(target)
        axes.plot(
            xs, [p["p50_ms"] for p in points], "o-", color=colour, label=f"{target} p50"
        )
        axes.plot(
            xs,
            [p["p99_ms"] for p in points],
            "s--",
            color=colour,
            label=f"{target} p99",
        )
    axes.set_xlabel("offered load (messages per second; rightmost point: closed loop)")
    axes.set_ylabel("send to recipient's event (ms)")
    axes.set_yscale("log")
    axes.set_title("private messages: delivery latency against load")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path
