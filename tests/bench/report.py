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
    out = [
        "# Benchmarks",
        "",
        "Written by `scripts/bench` (do not edit): real host-platform nodes on loopback, Home",
        "Assistant 2026.10.4 from the test plugin, one process. Figures are medians with the",
        "range (min-max) of the repeated runs; comparisons are ratios against a baseline",
        f"measured in the same run. Machine: {data['machine']['cpus']} CPUs, measured",
        f"{data['machine']['measured']}.",
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
    if cpu := data.get("cpu_us"):
        out += [
            "## 3. Home Assistant CPU per node frame and per point",
            "",
            "Frames in the node's exact format fed to the coordinator (decode, engine, state",
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
            "| nodes | Home Assistant CPU (share of one core) | frames | missed frames | memory per node |",
            "|---|---|---|---|---|",
        ]
        for n, r in sorted(scale.items(), key=lambda kv: int(kv[0])):
            out.append(
                f"| {n} | {r['cpu_share_of_one_core'] * 100:.2f} % | {r['frames']}"
                f" | {r['missed_frames']} | {r['memory_per_node_kib']:.0f} KiB |"
            )
        out.append("")
    REPORT.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
