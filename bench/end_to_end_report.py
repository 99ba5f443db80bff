"""Printing of `bench/end_to_end.py` reports: the console summary and the RESULTS.md tables."""

from __future__ import annotations

from typing import Any

OUR_STAGES = (
    "preprocess",
    "forward",
    "nms",
    "masks",
    "prompt",
    "other",
)  # profiling.STAGES + other


def _ms(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "-"
    return f"{stats['median'] * 1e3:8.1f}±{stats['iqr'] * 1e3 / 2:<6.1f}"


def print_report(report: dict[str, Any]) -> None:
    env = report["env"]
    print(
        f"\n# end to end on {env['device_name']} ({env['threads']} threads), torch {env['torch']}, "
        f"commit {env['commit'][:12]}, load {env['load_average']}"
    )
    print(
        "\ncase                          variant   ours e2e ms       oracle e2e ms     ratio   "
        "dets o/u | ours stages ms (pre fwd nms masks prompt other) enc | oracle (pre inf post) enc"
    )
    for row in report["cases"]:
        label = f"{row['case']} {row['imgsz']} retina={'on' if row['retina'] else 'off'}" + (
            f" +{row['prompt']}" if row["prompt"] else ""
        )
        oracle = row.get("oracle")
        for variant, stages in row["ours"].items():
            parts = " ".join(f"{stages.get(s, {}).get('median', 0) * 1e3:.0f}" for s in OUR_STAGES)
            ratio = row.get("ratio", {}).get(variant)
            oracle_parts = (
                " ".join(
                    f"{oracle[k]['median'] * 1e3:.0f}"
                    for k in ("preprocess", "inference", "postprocess")
                    if k in oracle
                )
                + f" {oracle['encode']['median'] * 1e3:.0f}"
                if oracle
                else "-"
            )
            print(
                f"{label:<30}{variant:<9}{_ms(stages['total'])}  {_ms(oracle['total'] if oracle else None)}  "
                f"{(f'{ratio:5.2f}x' if ratio else '  -  ')}  {row['detections'].get('oracle', '-')}/"
                f"{row['detections'].get(variant)} | {parts} {stages['encode']['median'] * 1e3:.0f} | "
                f"{oracle_parts}"
            )
    if report.get("forward"):
        print("\nforward only (ms, GFLOP/s):")
        for row in report["forward"]:
            cells = [
                f"{k} {v['median'] * 1e3:.0f} ({v.get('gflop_per_s', 0):.1f})"
                for k, v in row.items()
                if isinstance(v, dict)
            ]
            print(f"  {tuple(row['input_hw'])} {row['gflops'] or 0:.1f} GFLOP: " + ", ".join(cells))
    if report.get("throughput"):
        print("\nthroughput (images/s):")
        for row in report["throughput"]:
            print(
                f"  {row['variant']:<8} imgsz {row['imgsz']} B={row['batch']:<3} "
                f"{row['images_per_s']:.2f} img/s ({row['seconds']['median']:.2f} s per batch)"
            )
    if report.get("cold_start"):
        print("\ncold start (fresh process; s) and peak RSS:")
        for row in report["cold_start"]:
            print(
                f"  {row['side']:<7}{row.get('variant') or '':<9} import {row['import_s']:.1f}  load "
                f"{row['load_s']:.1f}  first call {row['first_call_s']:.1f}  second {row['second_call_s']:.1f}"
                f"  peak RSS {row['peak_rss_mb']:.0f} MB"
            )
    compile_times = report.get("compile_seconds")
    if compile_times:
        print(f"\ncompile time (s, not in any timing above): {compile_times}")


def markdown(report: dict[str, Any]) -> str:
    """The side-by-side table of a report as Markdown (for bench/RESULTS.md)."""
    env = report["env"]
    lines = [
        (
            f"Machine: {env['device_name']}, {env['cpu_count']} cores, {env['threads']} torch threads; "
            f"torch {env['torch']}, triton {env['triton']}; commit {env['commit'][:12]}; load average "
            f"at start {env['load_average']}, at end {env.get('load_average_end')}."
        ),
        "",
        (
            "| case | variant | ours e2e ms (median ± IQR/2) | oracle e2e ms | oracle / ours | dets oracle/ours "
            "| ours pre / fwd / nms / masks / other ms | oracle pre / inf / post ms | RLE enc ours / oracle ms | load |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["cases"]:
        label = f"{row['case']} {row['imgsz']} retina {'on' if row['retina'] else 'off'}"
        label += f" + {row['prompt']} prompt" if row["prompt"] else ""
        oracle = row.get("oracle", {})
        for variant, st in row["ours"].items():
            med = {k: v["median"] * 1e3 for k, v in st.items()}
            omed = {k: v["median"] * 1e3 for k, v in oracle.items()}
            lines.append(
                f"| {label} | {variant} | {med['total']:.0f} ± {st['total']['iqr'] * 5e2:.0f} | "
                f"{omed.get('total', 0):.0f} ± {oracle.get('total', {}).get('iqr', 0) * 5e2:.0f} | "
                f"**{row.get('ratio', {}).get(variant, 0):.2f}x** | {row['detections'].get('oracle', '-')}/"
                f"{row['detections'][variant]} | {med['preprocess']:.0f} / {med['forward']:.0f} / "
                f"{med['nms']:.0f} / {med['masks']:.0f} / {med['other']:.0f} | {omed.get('preprocess', 0):.0f} / "
                f"{omed.get('inference', 0):.0f} / {omed.get('postprocess', 0):.0f} | {med['encode']:.0f} / "
                f"{omed.get('encode', 0):.0f} | {row['load_average'][0]:.1f} |"
            )
    return "\n".join(lines)
