"""Render docs/benchmarks.json into docs/benchmarks.md."""

from __future__ import annotations

import json
from typing import Any

from tests.harness.node import REPO

RESULTS = REPO / "docs" / "benchmarks.json"
REPORT = REPO / "docs" / "benchmarks.md"


def fmt(s: dict[str, float], unit: str = "") -> str:
    return f"{s['median']:.3g}{unit} ({s['min']:.3g}-{s['max']:.3g})"


def main() -> None:
    data: dict[str, Any] = json.loads(RESULTS.read_text())
    debug = (
        "on" if data["machine"].get("asyncio_debug") else "off (as Home Assistant runs)"
    )
    out = [
        "# Benchmarks",
        "",
        "Written by `scripts/bench` (do not edit): real host-platform nodes on loopback, Home",
        "Assistant 2026.10.4 from the test plugin, one process. Figures are medians with the",
        "range (min-max) of the repeated runs; comparisons are ratios against a baseline",
        f"measured in the same run. Machine: {data['machine']['cpus']} CPUs, measured",
        f"{data['machine']['measured']}; asyncio debug mode {debug}.",
        "",
    ]
    if rt := data.get("round_trip_ms"):
        out += [
            "## 1. Frame round trip",
            "",
            "Desired frame from Home Assistant → node applies all points → node frame → every",
            "entity updated. Baseline: the bare aioesphomeapi client sending the same desired",
            "frame to the same node and waiting for the acknowledging frame.",
            "",
            "| points | Home Assistant p50 | p99 | raw aioesphomeapi p50 | p99 | ratio (p50) |",
            "|---|---|---|---|---|---|",
        ]
        for n, r in sorted(rt.items(), key=lambda kv: int(kv[0])):
            ha, raw = r["home_assistant"], r["raw_aioesphomeapi"]
            out.append(
                f"| {n} | {ha['median']:.3g} ms | {ha['p99']:.3g} ms | {raw['median']:.3g} ms"
                f" | {raw['p99']:.3g} ms | {r['ratio_p50']:.2f} |"
            )
        out.append("")
    for n, r in sorted(data.get("peers", {}).items(), key=lambda kv: int(kv[0])):
        out += latency_section(n, r)
    if cpu := data.get("cpu_us"):
        out += [
            "## 3. Home Assistant CPU per node frame and per point",
            "",
            "Frames in the node's exact format fed to the manager (decode, engine, state",
            "writes of changed points). Baseline: `hass.states.async_set` per call, same run.",
            "",
            "| points | frame, nothing changed | frame, all changed | per unchanged point | per changed point | async_set baseline | changed point / async_set |",
            "|---|---|---|---|---|---|---|",
        ]
        for n, r in sorted(cpu.items(), key=lambda kv: int(kv[0])):
            out.append(
                f"| {n} | {fmt(r['frame_unchanged'], ' µs')} | {fmt(r['frame_all_changed'], ' µs')}"
                f" | {fmt(r['per_unchanged_point'], ' µs')} | {fmt(r['per_changed_point'], ' µs')}"
                f" | {fmt(r['baseline_states_async_set'], ' µs')}"
                f" | {r['ratio_changed_point_to_async_set']:.2f} |"
            )
        out.append("")
    if scale := data.get("scale_100_points_1s"):
        out += [
            "## 4. Scale: nodes x 100 points at a 1 s cycle",
            "",
            (
                "Baseline in the same run: one bare aioesphomeapi client per node receiving"
                " the same frames (counted, not decoded), after the entries were unloaded."
                " Before each window the setup's delayed saves are written and the"
                " garbage of setup or unload is collected, so neither lands in a window."
            ),
            "",
            "| nodes | Home Assistant CPU (share of one core) | frames | missed frames | memory per node | bare clients' CPU | frames | ratio to bare |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for n, r in sorted(scale.items(), key=lambda kv: int(kv[0])):
            bare = (
                f" | {r['bare_cpu_share_of_one_core'] * 100:.2f} % | {r['bare_frames']}"
                f" | {r['ratio_to_bare']:.2f} |"
                if "ratio_to_bare" in r
                else " | — | — | — |"
            )
            out.append(
                f"| {n} | {r['cpu_share_of_one_core'] * 100:.2f} % | {r['frames']}"
                f" | {r['missed_frames']} | {r['memory_per_node_kib']:.0f} KiB" + bare
            )
        out.append("")
    for n, r in sorted(data.get("peers", {}).items(), key=lambda kv: int(kv[0])):
        out += core_section(n, r)
    for n, r in sorted(data.get("return", {}).items(), key=lambda kv: int(kv[0])):
        out += return_section(n, r)
    REPORT.write_text("\n".join(out) + "\n")


def return_section(points: str, r: dict[str, Any]) -> list[str]:
    """Benchmark 6 (tests/bench/bench_return.py)."""
    ours, core = r["frame"], r["core_esphome"]
    ratio = ours["connected_s"]["median"] / core["connected_s"]["median"]
    return [
        f"## 6. Node back after a restart ({points} points)",
        "",
        (
            "The node is killed (SIGKILL) and started again with its firmware defaults;"
            " from its API port accepting connections (probed every 5 ms) until Home"
            " Assistant is connected again, and (ours) until every desired value is on the"
            " node again, as a plain client subscribed to its states sees it."
            f" {r['rounds']} restarts per way, no zeroconf (each integration's own reconnect"
            " logic)."
        ),
        "",
        "| | node up → connected | node up → desired values on the node |",
        "|---|---|---|",
        (
            f"| {WAY_NAMES['frame']} | {fmt(ours['connected_s'], ' s')}"
            f" | {fmt(ours['desired_s'], ' s')} |"
        ),
        (
            f"| {WAY_NAMES['core_esphome']} | {fmt(core['connected_s'], ' s')}"
            " | — (no desired values) |"
        ),
        "",
        f"Connected, ours / Home Assistant's esphome integration (medians): {ratio:.2f}.",
        "",
    ]


WAY_NAMES = {
    "frame": "Data Exchange, frame mode",
    "entity": "Data Exchange, entity mode",
    "core_esphome": "Home Assistant's esphome integration",
    "raw_async_set": "bare aioesphomeapi + `async_set`",
}


def latency_section(points: str, r: dict[str, Any]) -> list[str]:
    """Benchmark 2 (tests/bench/bench_peers.py)."""
    s, lat, ratios = r["setup"], r["latency_ms"], r["ratios"]
    base = "raw_async_set" if r.get("core_esphome_unavailable") else "core_esphome"
    out = [
        f"## 2. Node change → Home Assistant state ({points} points)",
        "",
        (
            "A change made on the node itself (an API action called by a second, plain client)"
            " until the entity's `state_changed` event shows the new value;"
            f" {s['changes_per_round']} changes per round, {s['rounds']} rounds, the ways"
            " interleaved round by round, one connected at a time. Frame mode shows a change"
            f" with the node's next frame: cycle {s['frame_cycle_ms']} ms (node and Home"
            " Assistant), changes at a random phase against it. Entity mode, the core"
            " integration and the bare client run on the same node without our component."
        ),
        "",
        *unavailable(r),
        f"| | p50 | p99 | p50 / {WAY_NAMES[base]} | p99 / {WAY_NAMES[base]} |",
        "|---|---|---|---|---|",
    ]
    for way, name in WAY_NAMES.items():
        if way not in lat:
            continue
        ratio = ratios.get(f"{way}/{base}")
        out.append(
            f"| {name} | {fmt(lat[way]['p50'], ' ms')} | {fmt(lat[way]['p99'], ' ms')}"
            + (
                f" | {fmt(ratio['latency_p50'])} | {fmt(ratio['latency_p99'])} |"
                if ratio
                else " | 1 | 1 |"
            )
        )
    out.append("")
    return out


def core_section(points: str, r: dict[str, Any]) -> list[str]:
    """Benchmark 5 (tests/bench/bench_peers.py)."""
    s, cpu, ratios = r["setup"], r["cpu"], r["ratios"]
    base = "raw_async_set" if r.get("core_esphome_unavailable") else "core_esphome"
    out = [
        f"## 5. Home Assistant's own esphome integration, same nodes ({points} points)",
        "",
        (
            "CPU of the Home Assistant process (`time.process_time`) while the node changes"
            f" every point every {s['burst_period_ms']} ms for {s['burst_ticks']} ticks, from"
            " the start until every entity shows the last value, divided by the state updates"
            " of the point entities written meanwhile. Net: minus the process's CPU share"
            " measured idle just before (same way connected, as long a window); for frame mode"
            " that idle share is its cycle. Frame mode writes fewer updates (one per point and"
            " frame, the latest value). asyncio debug mode:"
            f" {'on' if s.get('asyncio_debug') else 'off'}."
        ),
        "",
        *unavailable(r),
        (
            "| | per update | net per update | CPU share while following | idle share |"
            f" updates | ratios to {WAY_NAMES[base]}: per update | net | share |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for way, name in WAY_NAMES.items():
        if way not in cpu:
            continue
        c = cpu[way]
        ratio = ratios.get(f"{way}/{base}")
        out.append(
            f"| {name} | {fmt(c['us_per_update'], ' µs')}"
            f" | {fmt(c['net_us_per_update'], ' µs')}"
            f" | {pct(c['share_of_one_core'])} | {pct(c['idle_share_of_one_core'])}"
            f" | {c['updates']['median']:.0f}"
            + (
                f" | {fmt(ratio['cpu_per_update'])} | {fmt(ratio['net_cpu_per_update'])}"
                f" | {fmt(ratio['cpu_share'])} |"
                if ratio
                else " | 1 | 1 | 1 |"
            )
        )
    out.append("")
    out += wire_section(r)
    return out


def wire_section(r: dict[str, Any]) -> list[str]:
    """Bytes on the wire during benchmark 5, counted by a TCP proxy in front of the node."""
    s, cpu = r["setup"], r["cpu"]
    rows = [
        (way, name)
        for way, name in WAY_NAMES.items()
        if way in cpu and "idle_bytes_per_s_from_node" in cpu[way]
    ]
    if not rows:
        return []
    points, cycle_s = s["points"], s["frame_cycle_ms"] / 1000
    out = [
        (
            "Bytes on the wire, same runs: the TCP payload through a proxy in front of the"
            " node (native API framing included, IP and TCP headers not). Idle: nothing"
            " changes (frame mode: one full frame and one desired frame per"
            f" {s['frame_cycle_ms']} ms cycle; the others: the API's keep-alive pings). Per"
            " update: while following the burst, the idle traffic of the same time taken off."
        ),
        "",
        (
            "| | idle, from the node | idle, to the node | idle from the node per point"
            " and cycle | per update, from the node | per update, to the node |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for way, name in rows:
        c = cpu[way]
        per_point = c["idle_bytes_per_s_from_node"]["median"] * cycle_s / points
        out.append(
            f"| {name} | {fmt(c['idle_bytes_per_s_from_node'], ' B/s')}"
            f" | {fmt(c['idle_bytes_per_s_to_node'], ' B/s')}"
            f" | {per_point:.3g} B"
            f" | {fmt(c['bytes_per_update_from_node'], ' B')}"
            f" | {fmt(c['bytes_per_update_to_node'], ' B')} |"
        )
    out.append("")
    return out


def unavailable(r: dict[str, Any]) -> list[str]:
    if why := r.get("core_esphome_unavailable"):
        return [
            (
                "Home Assistant's esphome integration could not be loaded here: "
                f"{why}. Ratios are to the bare aioesphomeapi client instead."
            ),
            "",
        ]
    return []


def pct(s: dict[str, float]) -> str:
    return f"{s['median'] * 100:.3g} % ({s['min'] * 100:.3g}-{s['max'] * 100:.3g})"


if __name__ == "__main__":
    main()
