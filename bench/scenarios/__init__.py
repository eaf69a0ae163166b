"""The benchmark scenarios of issue 4, one module each.

Every module has ``NAME`` and ``run(ctx) -> dict``; the dict is the
scenario's JSON line.
"""

SCENARIOS = (
    "private",
    "group_fanout",
    "login_storm",
    "connections",
    "history",
    "backlog",
    "latency_floor",
    "slow_consumers",
    "presence_churn",
)
