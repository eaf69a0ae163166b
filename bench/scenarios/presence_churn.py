"""presence_churn: users logging in and out at a steady rate, presence on.

chatd runs with ``online_users = all``.  The same churn rate runs over a
small and a ten times larger online population, each on a fresh server.
Figures: server CPU per login in each, their ratio, and the presence
frames (presence, online_users, online_users_changed) the clients got.
"""

from bench import servers
from bench.loadgen.workers import WorkerPool, split
from bench.scenarios import common

NAME = "presence_churn"
CHURN_WORKER = "bench.loadgen.session_workers:churn_worker"
FRAMES = ("presence", "online_users", "online_users_changed")


def _population(ctx, target: str, work, users: int, rate: float, seconds: float):
    """Measure churn over one online population.

    Args:
        ctx: The run context.
        target: ``chatd`` or ``relay``.
        work: The working directory.
        users: The online population.
        rate: Logins per second.
        seconds: The measured window.

    Returns:
        The figures for this population.
    """
    pairs = [(i, i + 1) for i in range(0, users - 1, 2)]
    with servers.target(target, work, online_users="all") as server:
        registered, _ = common.run_setup(
            common.setup_users(server, "pres", users, pairs=pairs)
        )
        specs = [
            {"address": server.address(), "accounts": part}
            for part in split(registered, ctx.procs)
        ]
        per_worker = rate / len(specs)
        with WorkerPool(CHURN_WORKER, specs) as pool:
            pool.wait_ready(timeout=300)
            go = common.start_phase(0.3, 0.0, seconds, rate=per_worker)
            pool.go(go)
            window = common.measure_window(server, go)
            results = pool.wait_ready(timeout=seconds + 60)
            pool.go({"phase": "stop"})
            pool.results(timeout=120)

    logins = sum(r["logins"] for r in results)
    figures = {
        "users": users,
        "logins": logins,
        "failed": sum(r["failed"] for r in results),
        "server_cores": round(window["cores"], 3),
        "client_cores": round(sum(r["cpu_s"] for r in results) / seconds, 3),
        "server_cpu_ms_per_login": round(window["cpu_s"] * 1000 / logins, 3)
        if logins
        else None,
    }
    for name in FRAMES:
        figures[f"{name}_frames"] = sum(r[name] for r in results)
    return figures


def run(ctx: common.Context) -> dict:
    """Run presence_churn against every target.

    Args:
        ctx: The run context.

    Returns:
        The scenario's JSON line.
    """
    small, large = ctx.size((100, 1000), (20, 200))
    rate = ctx.size(100.0, 50.0)
    seconds = ctx.size(10.0, 3.0)
    figures = {}
    with servers.workdir(ctx.keep_logs) as work:
        for target in ctx.targets:
            figures[target] = {
                "small": _population(ctx, target, work, small, rate, seconds),
                "large": _population(ctx, target, work, large, rate, seconds),
            }

    ratios, targets = {}, {}
    for target, result in figures.items():
        ratios[f"{target}_cpu_per_login_large_vs_small"] = common.ratio(
            result["large"]["server_cpu_ms_per_login"],
            result["small"]["server_cpu_ms_per_login"],
        )
    if "chatd" in figures:
        targets["cpu_per_login"] = {
            "met": common.target_check(
                ratios["chatd_cpu_per_login_large_vs_small"], 2.0
            ),
            "detail": "CPU per login at the large population at most 2x the small",
        }
    return common.line(NAME, ctx, figures, ratios, targets)
