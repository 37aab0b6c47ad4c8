"""The benchmark's output: the per-bundle table, the summary on stdout and ``bench.json``."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from loadtests.bench.closed_loop import STAGES
from loadtests.bench.plan import Plan
from loadtests.bench.verdict import FLOOR_RATIO_TARGET, STEADY_P99_TARGET_MS, SUSTAINED_P99_MS, judge_step
from loadtests.stats import jsonable


def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def format_report(r: Mapping[str, Any], plan: Plan) -> str:
    """One bundle's table: (a) floor, (b) server stages, (c) open-loop steps, (d) memory, profile."""
    fl = r["floor"]
    comp = fl["components_ms"]
    cand = fl["candidates_to_scorer"]
    lines: list[str] = []
    w = lines.append
    w("")
    w(
        f"=== {r['bundle']}: {fl['n_items']:,} items, {fl['n_users']:,} users, {fl['index']}"
        + (f" nprobe {fl['nprobe']}" if fl["nprobe"] else "")
        + f", retrieval {fl['retrieval_size']} + popularity {fl['popularity_size']}"
        + f" (~{cand['home']['mean']:.0f} home / ~{cand['now_playing']['mean']:.0f} now_playing candidates reach"
        + f" the scorer), Redis features, {plan.workers} worker(s) ==="
    )
    w("")
    w("(a) component floor, each alone in-process              p50 ms   p99 ms")
    labels = {
        "faiss_search_home": f"FAISS search k={fl['retrieval_size']} (home query)",
        "faiss_search_now_playing": f"FAISS search k={fl['retrieval_size']} (now_playing query)",
        "redis_get_user": "Redis get_user (1 pipelined round trip)",
        "onnx_batch": f"ONNX {fl['onnx_model']} batch [{fl['onnx_rows']} x N_RANKER_FEATURES]",
    }
    for key, label in labels.items():
        w(f"  {label:<52} {_f(comp[key]['p50']):>7}  {_f(comp[key]['p99']):>7}")
    floor = fl["floor_p50_ms"]
    w(f"  {'floor = sum of p50s (home / now_playing)':<52} {_f(floor['home']):>7}  / {_f(floor['now_playing'])}")
    w("")
    ss = r.get("server_side")
    if ss:
        n = ss["home"]["requests"]
        w(f"(b) server-side stages, closed loop, debug timings, {n} requests/surface")
        w(f"  {'stage':<22} {'home p50':>9} {'home p99':>9} {'np p50':>9} {'np p99':>9}")
        for stage in STAGES:
            h = ss["home"]["stages_ms"].get(stage)
            p = ss["now_playing"]["stages_ms"].get(stage)
            if h is None or p is None:
                continue
            w(f"  {stage:<22} {_f(h['p50']):>9} {_f(h['p99']):>9} {_f(p['p50']):>9} {_f(p['p99']):>9}")
        hc, pc = ss["home"]["client_ms"], ss["now_playing"]["client_ms"]
        w(f"  {'client-observed':<22} {_f(hc['p50']):>9} {_f(hc['p99']):>9} {_f(pc['p50']):>9} {_f(pc['p99']):>9}")
        deg = {s: ss[s]["degraded"] for s in ("home", "now_playing") if ss[s]["degraded"]}
        if deg:
            w(f"  degraded answers: {deg}")
        ratio = r["ratio_vs_floor"]
        w(
            f"  server total p50 / floor: home {ratio['home']:.2f}x  now_playing {ratio['now_playing']:.2f}x"
            f"   (target <= {FLOOR_RATIO_TARGET}x: home {_mark(ratio['home'] <= FLOOR_RATIO_TARGET)},"
            f" now_playing {_mark(ratio['now_playing'] <= FLOOR_RATIO_TARGET)})"
        )
        w("")
    steps = r.get("steps")
    if steps:
        s0 = steps[0]
        w(
            f"(c) open loop from a separate process: constant arrival, {s0['duration_s']:g} s/step after"
            f" {s0['warmup_s']:g} s warm-up, deadline {s0['deadline_ms']:g} ms, {s0['channels']} channels,"
            " Zipfian users, 50/50 surfaces"
        )
        w(
            f"  {'rate/s':>7} {'sent':>6} {'err%':>5} {'degr%':>5} {'p50':>7} {'p90':>7} {'p99':>7} {'p99.9':>7}"
            f" {'max':>7} {'srv p50':>7} {'srv p99':>7} {'lag p99':>7} {'cli cpu':>7}  held"
        )
        for s in [*steps, r["steady"]]:
            lat, srv = s["latency_ms"], s["server_total_ms"]
            label = f"{s['rate']:g}" + ("*" if s is r["steady"] else "")
            why = "" if s["held"] else "  (" + "; ".join(judge_step(s).reasons) + ")"
            w(
                f"  {label:>7} {s['sent']:>6} {100 * s['error_ratio']:>5.1f} {100 * s['degraded_ratio']:>5.1f}"
                f" {_f(lat['p50']):>7} {_f(lat['p90']):>7} {_f(lat['p99']):>7} {_f(lat['p999']):>7}"
                f" {_f(lat['max']):>7} {_f(srv['p50']):>7} {_f(srv['p99']):>7} {_f(s['send_lag_ms']['p99']):>7}"
                f" {100 * s['client_cpu_share']:>6.0f}%  {'yes' if s['held'] else 'no'}{why}"
            )
        w("  (ms; latency from the scheduled send time; srv = the server's own total; lag = generator send lag;")
        w("   * = the steady-rate run)")
        sustained = r["sustained_rate"]
        w(
            f"  sustained rate (p99 <= {SUSTAINED_P99_MS:g} ms, errors < 1 %, degraded < 1 %): "
            + (f"{sustained:g} req/s" if sustained is not None else "none of the stepped rates held")
        )
        st = r["steady"]
        w(
            f"  steady rate {st['rate']:g} req/s for {st['duration_s']:g} s: client p50 {_f(st['latency_ms']['p50'])}"
            f" p99 {_f(st['latency_ms']['p99'])} ms (target <= {STEADY_P99_TARGET_MS:g} ms: {_mark(st['meets_15ms'])})"
        )
        hi = r.get("highest_rate_p99_under_15ms")
        w(f"  highest stepped rate with p99 <= {STEADY_P99_TARGET_MS:g} ms: " + (f"{hi:g} req/s" if hi else "none"))
        w("")
    mem = r.get("memory_loaded") or r.get("memory_idle")
    if mem:
        w("(d) resident memory after the load steps (smaps_rollup, MiB)")
        w(f"  {'pid':>8} {'role':<6} {'rss':>8} {'pss':>8} {'private':>8} {'shared':>8}  command")
        for m in mem:
            w(
                f"  {m['pid']:>8} {m['role']:<6} {m['rss']:>8.0f} {m['pss']:>8.0f} {m['private']:>8.0f}"
                f" {m['shared']:>8.0f}  {m['cmd'][:60]}"
            )
        w("")
    prof = r.get("profile")
    if prof:
        if "error" in prof:
            w(f"(profile) {prof['error']}")
        else:
            w(
                f"(profile) py-spy {'--native ' if prof['native'] else ''}under load: {prof['samples']} samples,"
                f" {100 * prof['busy_share']:.0f} % busy ({prof['file']})"
            )
            w("  busy samples by thread: " + ", ".join(f"{t} {100 * x:.0f} %" for t, x in prof["threads"][:6]))
            titles = {"self": "leaf frames (self), % of busy samples", "total": "project frames on the stack (total)"}
            for kind, title in titles.items():
                w(f"  {title}:")
                for frame, share in prof[kind][:12]:
                    w(f"    {100 * share:5.1f}%  {frame[:110]}")
        w("")
    return "\n".join(lines)


def host_info() -> dict[str, Any]:
    """Python version, CPU count and model, load average now: what the timings depend on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "machine": platform.machine(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    return info


def write_json(path: Path, report: Mapping[str, Any]) -> None:
    """``report`` as strict JSON (NaN and inf as null)."""
    path.write_text(json.dumps(jsonable(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def print_summary(report: Mapping[str, Any], texts: Sequence[str], out: TextIO) -> None:
    print("\n==================== Encore benchmark ====================", file=out)
    host = report["host"]
    print(
        f"host: {host.get('cpu_model', '?')}, {host['cpus']} CPUs, load average at start "
        + " ".join(f"{x:.2f}" for x in host["loadavg_at_start"]),
        file=out,
    )
    for name in report["skipped"]:
        print(f"skipped: {name}", file=out)
    for text in texts:
        print(text, file=out)
