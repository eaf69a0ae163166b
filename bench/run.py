"""Run the benchmark scenarios: ``python -m bench.run [--quick] [--only ...]``.

Each scenario runs against freshly started servers and prints one JSON
line; the latency-against-load plot is written to the output directory.
"""

import argparse
import importlib
import json
import resource
import sys
import time
import traceback
from pathlib import Path

from bench import servers
from bench.scenarios import SCENARIOS
from bench.scenarios.common import Context

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: The arguments, or None for ``sys.argv``.

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and short")
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--target",
        help="comma-separated: chatd, relay (default both, relay alone "
        "when twistd has no chatd plugin)",
    )
    parser.add_argument("--procs", type=int, default=2, help="generator processes")
    parser.add_argument("--keep-logs", action="store_true")
    return parser.parse_args(argv)


def _targets(option: str | None) -> list[str]:
    """Decide which servers to measure.

    Args:
        option: The ``--target`` value.

    Returns:
        The target names, chatd first.
    """
    if option:
        names = [n.strip() for n in option.split(",") if n.strip()]
        unknown = set(names) - {"chatd", "relay"}
        if unknown:
            sys.exit(f"unknown target: {', '.join(sorted(unknown))}")
        return sorted(names, key=lambda n: n != "chatd")
    if servers.chatd_available():
        return ["chatd", "relay"]
    print("twistd has no chatd plugin: measuring the relay only", file=sys.stderr)
    return ["relay"]


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios and write the results.

    Args:
        argv: Command-line arguments, or None for ``sys.argv``.

    Returns:
        The exit status: 0, or 1 if a scenario failed to run.
    """
    args = parse_args(argv)
    names = SCENARIOS
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = set(names) - set(SCENARIOS)
        if unknown:
            sys.exit(f"unknown scenario: {', '.join(sorted(unknown))}")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    ctx = Context(
        quick=args.quick,
        targets=_targets(args.target),
        procs=args.procs,
        out_dir=args.out,
        keep_logs=args.keep_logs,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    status = 0
    lines = []
    for name in names:
        started = time.monotonic()
        module = importlib.import_module(f"bench.scenarios.{name}")
        try:
            result = module.run(ctx)
        except Exception as error:  # noqa: BLE001 - report and go on
            traceback.print_exc()
            result = {"scenario": name, "error": f"{type(error).__name__}: {error}"}
            status = 1
        result["elapsed_s"] = round(time.monotonic() - started, 1)
        print(json.dumps(result), flush=True)
        lines.append(result)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"results-{stamp}.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in lines)
    )
    if ctx.curves:
        from bench import plot

        path = plot.latency_against_load(ctx.curves, args.out / "latency.png")
        print(f"plot: {path}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
