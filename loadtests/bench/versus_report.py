"""The versus run's figures and table: ratios, CPU per request, capacity and goodput (pure functions).

Capacity is what the cores left to the server could answer at the CPU cost per request measured
at a low rate: ``capacity = (cores - generator CPU share) / server CPU seconds per request``
(req/s). Goodput ratio = OK answers per second under overload / capacity: 1.0 means overload
costs nothing, lower means shedding, timeouts or contention eat into useful work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: Names of the servers compared, in table order, and what each is.
SERVERS = {
    "encore": "Encore, shipped settings (cascade on)",
    "encore_no_cascade": "Encore, cascade_size 0",
    "reference": "straight-line reference",
    "encore_2w": "Encore, shipped, --workers 2",
    "reference_2w": "reference, --workers 2",
}
PROBLEM_MARKERS = ("Traceback", "Exception")
CAPACITY_FORMULA = (
    "capacity = (cores - the step's generator CPU share) / CPU s per request of Encore --workers 2 (from (b))"
)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``; None when either is missing or NaN or the denominator is not positive."""
    if numerator is None or denominator is None or math.isnan(numerator) or math.isnan(denominator):
        return None
    return numerator / denominator if denominator > 0 else None


def cpu_per_request_ms(cpu_s: float, ok: int) -> float | None:
    """CPU milliseconds per OK answer; None without answers."""
    return cpu_s * 1000.0 / ok if ok > 0 else None


def capacity_rps(cores: float, generator_share: float, cpu_ms_per_request: float | None) -> float | None:
    """Requests per second the cores left after the load generator can serve (the module docstring)."""
    if cpu_ms_per_request is None or cpu_ms_per_request <= 0:
        return None
    return max(cores - generator_share, 0.0) / (cpu_ms_per_request / 1000.0)


def goodput_ratio(ok_per_s: float, capacity: float | None) -> float | None:
    """OK answers per second over capacity."""
    return ratio(ok_per_s, capacity)


def busiest_share(worker_cpu_s: Sequence[float]) -> float | None:
    """The busiest worker's share of the workers' CPU (0.5 = an even split of two); None without workers."""
    total = math.fsum(worker_cpu_s)
    return max(worker_cpu_s) / total if worker_cpu_s and total > 0 else None


def metric_total(exposition: str, name: str) -> float:
    """The sum of every sample of metric ``name`` (all label sets) in Prometheus text exposition."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def count_problem_lines(log_text: str) -> int:
    """Lines that mention a ``Traceback`` or an ``Exception``."""
    return sum(any(m in line for m in PROBLEM_MARKERS) for line in log_text.splitlines())


def pool_cpu(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Open-loop runs at a fixed rate pooled: server and Redis CPU per OK answer, the generator's
    mean CPU share, and the server's CPU share of wall time."""
    server_s = math.fsum(r["server_cpu_s"] for r in runs)
    redis_s = math.fsum(r["redis_cpu_s"] for r in runs)
    wall_s = math.fsum(r["wall_s"] for r in runs)
    ok = sum(int(r["ok"]) for r in runs)
    return {
        "runs": len(runs),
        "ok": ok,
        "errors": sum(int(r["errors"]) for r in runs),
        "server_cpu_s": server_s,
        "cpu_ms_per_request": cpu_per_request_ms(server_s, ok),
        "redis_cpu_ms_per_request": cpu_per_request_ms(redis_s, ok),
        "server_cpu_share": server_s / wall_s if wall_s > 0 else None,
        "client_cpu_share": math.fsum(r["client_cpu_share"] for r in runs) / len(runs) if runs else None,
    }


def _f(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}{suffix}"


def _pct(share: float | None) -> str:
    return _f(None if share is None else 100 * share, 0, "%")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows under headers, indented two spaces; the first column left-aligned, the others right."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        cells = (c.ljust(wd) if i == 0 else c.rjust(wd) for i, (c, wd) in enumerate(zip(row, widths, strict=True)))
        return "  " + "  ".join(cells)

    return [line(r) for r in [headers, *rows]]


def _latency_rows(lat: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for name in ("encore", "encore_no_cascade", "reference"):
        r = lat[name]
        srv, cli = r["server_total_ms"], r["client_ms"]
        ratios = _f(r["server_ratio"], suffix="x"), _f(r["client_ratio"], suffix="x")
        rows.append(
            [SERVERS[name], _f(srv["p50"]), _f(srv["p99"]), ratios[0], _f(cli["p50"]), _f(cli["p99"]), ratios[1]]
        )
    return rows


def _cpu_rows(cpu: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for name in (n for n in SERVERS if n in cpu):
        r = cpu[name]
        cost = _f(r["cpu_ms_per_request"], 3), _f(r["ratio"], suffix="x"), _f(r["redis_cpu_ms_per_request"], 3)
        shares = _pct(r["server_cpu_share"]), _pct(r["client_cpu_share"])
        rows.append([SERVERS[name], str(r["runs"]), str(r["ok"]), *cost, *shares])
    return rows


def _other(errors: Mapping[str, int]) -> str:
    """Error counts other than RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED, by code ("0" when none)."""
    rest = {code: n for code, n in sorted(errors.items()) if code not in ("RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED")}
    return " ".join(f"{code} {n}" for code, n in rest.items()) or "0"


def _capacity_rows(over: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for s in over["steps"]:
        load = f"{s['multiple']:g}x", f"{s['rate']:g}", _f(s["send_lag_p99_ms"], 1), _f(s["ok_per_s"], 0)
        good = (
            _f(s["capacity"], 0),
            _f(s["goodput_ratio"]),
            _f(s["capacity_at_load"], 0),
            _f(s["goodput_ratio_at_load"]),
        )
        cpu = _f(s["cpu_ms_per_request"], 2), _pct(s["client_cpu_share"]), _pct(s["server_cpu_share"])
        rows.append([*load, *good, *cpu, str(s["log_problems"]), s["health"]])
    return rows


def _error_rows(over: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for s in over["steps"]:
        codes = [s[k] for k in ("resource_exhausted", "deadline_exceeded", "cancelled")]
        by_code = [x for c in codes for x in (str(c["count"]), _f(c["p50"], 1), _f(c["p99"], 1))]
        server = [_f(s["server_shed"], 0), _f(s["server_expired"], 0)]
        rows.append([f"{s['multiple']:g}x", str(s["sent"]), str(s["ok"]), str(s["degraded"]), *by_code])
        rows[-1] += [str(s["other_errors"]), *server]
    return rows


def format_versus(v: Mapping[str, Any]) -> str:
    """The versus table: (a) latency, (b) CPU per request, (c) sustained rate, (d) overload."""
    plan = v["plan"]
    lines = [
        "",
        f"=== versus on {v['bundle']}: Encore against the straight-line reference, Home only, retrieval"
        f" {plan['retrieval_size']} + popularity {plan['popularity_size']}, {v['cores']} cores ===",
    ]
    if "latency" in v:
        lines += ["", f"(a) closed loop, {plan['rounds']} interleaved rounds x {plan['requests']} requests per server"]
        lines += _table(
            ["server", "srv p50", "srv p99", "x ref", "cli p50", "cli p99", "x ref"], _latency_rows(v["latency"])
        )
        lines += [
            "  (ms; srv = the server's own debug total: Encore's pipeline (no validation, assignment, response),",
            "   the reference's whole handler; cli = client round trip; x ref = p50 over the reference's)",
        ]
        for name in ("encore", "encore_no_cascade"):
            stages = v["latency"][name]["stages_p50_ms"]
            lines.append(f"  {name} stage p50s: " + ", ".join(f"{s} {_f(ms)}" for s, ms in stages.items()))
    if "cpu" in v:
        lines += ["", f"(b) CPU per request at {plan['cpu_rate']:g} req/s open loop, interleaved, pooled over the runs"]
        lines += _table(
            ["server", "runs", "ok", "cpu ms/req", "x ref", "redis ms", "srv cpu", "gen cpu"], _cpu_rows(v["cpu"])
        )
        lines += [
            "  (server process tree utime+stime / OK answers; x ref = over the reference with as many workers;",
            "   redis = Redis CPU ms per answer; srv / gen cpu = share of one core: server, load generator)",
        ]
    sus = v.get("sustained")
    if sus:
        lines += ["", "(c) sustained rate, --workers 2: p99 <= 25 ms, < 1 % errors; geometric steps, interleaved"]
        rows = []
        for n in ("encore_2w", "reference_2w"):
            steps = (
                f"{s['rate']:g}:{_f(s['latency_ms']['p99'], 1)}/{_pct(busiest_share(s['worker_cpu_s']))}"
                + "!" * (not s["held"])
                for s in sus[n]["steps"]
            )
            rows.append([SERVERS[n], _f(sus[n]["rate"], 0), "  ".join(steps)])
        lines += _table(
            ["server", "req/s", "steps: rate:p99 ms/busiest worker's CPU share (! = missed, ends it)"], rows
        )
        lines.append(f"  Encore / reference: {_f(sus['ratio'], suffix='x')}")
    over = v.get("overload")
    if over:
        lines += [
            "",
            f"(d) overload: Encore --workers 2 at multiples of its sustained rate, {plan['deadline_ms']:g} ms deadline;"
            f" CPU ms per request {_f(over['cpu_ms_per_request'], 2)} in (b),"
            f" {_f(over['cpu_ms_per_request_at_load'], 2)} at the sustained rate (@load)",
            f"  {over['formula']}",
        ]
        headers = ["load", "rate", "lag p99", "ok/s", "capacity", "goodput", "cap@load", "gp@load", "cpu ms/req"]
        lines += _table([*headers, "gen cpu", "srv cpu", "log", "health"], _capacity_rows(over))
        lines.append("")
        headers = ["load", "sent", "ok", "degr", "RE", "RE p50", "RE p99", "DE", "DE p50", "DE p99", "CAN"]
        lines += _table([*headers, "CAN p50", "CAN p99", "other", "srv shed", "srv expired"], _error_rows(over))
        lines += [
            "  (lag = the generator's send lag, ms; cpu ms/req = the server's CPU per OK answer in the step; log =",
            "   server log lines with Traceback or Exception in the step; health = gRPC health after it; degr =",
            "   degraded OK answers; RE = RESOURCE_EXHAUSTED, DE = DEADLINE_EXCEEDED, CAN = CANCELLED: gRPC core",
            "   refusing a call past Encore's max_pending backlog (fast), or a call dropped after its deadline passed;",
            "   ms from the scheduled send; srv shed / expired = Encore's encore_shed_requests_total /",
            "   encore_expired_requests_total during the step, warm-up included (gRPC core's refusals are in neither))",
        ]
    lines.append("")
    return "\n".join(lines)
