"""Turn measured figures into a verdict, a table for the terminal, a markdown summary and a JSON file.

The verdict answers the two questions a user has: which stage bounds end-to-end throughput, and how
close the pipeline comes to that bound:

    bound      = min(decode-only tiles/s, inference-only tiles/s)   (same workers / batch size)
    efficiency = end-to-end tiles/s / bound                          (fwrd-run aims at >= 0.9)

    v = stage_verdict(decode=850.0, inference=42.0, end_to_end=40.1)
    v["bound_by"], v["efficiency"]      # "inference", 0.955
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fwrd.atomic import write_json, write_text
from fwrd.benchmark.stats import is_noisy
from fwrd.runtime.outputs.summary import finite_or_none

E2E_TARGET = 0.9  # issue 4: end to end >= 0.9 x the slower stage measured alone
STAGES = ("decode", "inference")


def stage_verdict(
    decode: float | None, inference: float | None, end_to_end: float | None, target: float = E2E_TARGET
) -> dict[str, Any]:
    """Which stage bounds `end_to_end` and what fraction of that bound it reaches (tiles/s figures).

    The bound is the slower of the stages measured alone; a stage not measured (None) is left out and
    the text says so. `headroom` is how many times faster the other stage is than the bound.
    """
    stages = {name: v for name, v in zip(STAGES, (decode, inference)) if v is not None and v > 0}
    missing = [name for name in STAGES if name not in stages]
    if end_to_end is None or not stages:
        return {"bound_by": None, "bound_tiles_per_s": None, "efficiency": None, "headroom": None,
                "meets_target": None, "text": "not measured: needs end to end and decode or inference"}
    bound_by = min(stages, key=stages.__getitem__)  # decode first: a tie names decode
    bound = stages[bound_by]
    efficiency = end_to_end / bound
    others = [v for name, v in stages.items() if name != bound_by]
    headroom = others[0] / bound if others else None
    meets = efficiency >= target
    parts = ", ".join(f"{name} {_num(v)}" for name, v in stages.items())
    text = (f"{bound_by}-bound: end to end {_num(end_to_end)} tiles/s = {efficiency:.2f} x "
            f"min({parts}) tiles/s")
    if missing:
        text += f" ({' and '.join(missing)} not measured)"
    if not meets:
        text += (f"; below {target:.2f} of the bound: decode and inference stall each other or compete "
                 "for the same cores")
    return {"bound_by": bound_by, "bound_tiles_per_s": bound, "efficiency": round(efficiency, 4),
            "headroom": None if headroom is None else round(headroom, 3), "meets_target": meets, "text": text}


def _median(figure: dict[str, Any] | None) -> float | None:
    return None if not figure else float(figure["median"])


def overall_verdict(result: dict[str, Any]) -> dict[str, Any]:
    """The headline: fastest end-to-end configuration, its bound and efficiency, the speed-up over the
    naive loop, and how each other model/backend compares with the first one (model vs end to end)."""
    lines: list[str] = []
    out: dict[str, Any] = {"lines": lines}
    e2e = result.get("end_to_end") or []
    naive = _median((result.get("naive") or {}).get("tiles_per_s"))
    if e2e:
        best = max(e2e, key=lambda row: row["tiles_per_s"]["median"])
        out["best_end_to_end"] = {k: best[k] for k in ("label", "batch_size", "workers")} | {
            "tiles_per_s": best["tiles_per_s"]["median"]}
        out["bound_by"] = best["verdict"]["bound_by"]
        out["efficiency"] = best["verdict"]["efficiency"]
        lines.append(f"Fastest end to end: {best['label']}, batch {best['batch_size']}, {best['workers']} "
                     f"worker(s): {_num(best['tiles_per_s']['median'])} tiles/s.")
        lines.append(_capital(best["verdict"]["text"]) + ".")
        if best.get("runtime_bottleneck"):
            lines.append(f"The runtime's own clock in that run: most consumer time went to "
                         f"{best['runtime_bottleneck']}.")
        if naive:
            out["speedup_over_naive"] = round(best["tiles_per_s"]["median"] / naive, 3)
            lines.append(f"Speed-up over the naive loop ({_num(naive)} tiles/s): "
                         f"{out['speedup_over_naive']:.2f}x.")
    elif result.get("inference"):
        best_inf = max(result["inference"], key=lambda row: row["tiles_per_s"]["median"])
        lines.append(f"Fastest inference: {best_inf['label']}, batch {best_inf['batch_size']}: "
                     f"{_num(best_inf['tiles_per_s']['median'])} tiles/s (end to end not measured).")
        if naive:
            out["inference_speedup_over_naive"] = round(best_inf["tiles_per_s"]["median"] / naive, 3)
            lines.append(f"Model speed-up over the naive loop ({_num(naive)} tiles/s): "
                         f"{out['inference_speedup_over_naive']:.2f}x.")
    for row in result.get("dense") or []:
        if row["speedup"] is not None:
            agree = row.get("agreement") or {}
            rho = "" if agree.get("spearman") is None else f"; tile scores Spearman {agree['spearman']:.3f}"
            lines.append(f"Dense vs per tile, {row['label']}, {row['workers']} worker(s): {row['speedup']:.2f}x end to "
                         f"end ({_num(row['tiles_per_s']['median'])} vs {_num(row['per_tile_tiles_per_s'])} tiles/s, "
                         f"regions of {row['region_side']} px){rho}.")
    naive_row = result.get("naive") or {}
    if naive_row.get("status") == "skipped":
        lines.append(f"Naive baseline skipped: {naive_row['reason']}.")
    memory = result.get("memory")
    if memory:
        small, large = memory["slides"]
        lines.append(f"Peak memory of fwrd-run: {small['peak_rss_mb']:.0f} MiB on {small['slide']}, "
                     f"{large['peak_rss_mb']:.0f} MiB on 4x its area ({memory['ratio_4x_area']:.2f}x).")
    out["comparisons"] = comparisons(result)
    for row in out["comparisons"]:
        e2e_text = "not measured" if row["end_to_end_speedup"] is None else f"{row['end_to_end_speedup']:.2f}x"
        model_text = "not measured" if row["model_speedup"] is None else f"{row['model_speedup']:.2f}x"
        lines.append(f"{row['label']} vs {row['reference']}: model {model_text}, end to end {e2e_text}.")
    noisy = _noisy_figures(result)
    if noisy:
        lines.append(f"Noisy (repeats differ by > 20%): {', '.join(noisy)}; use more --repeats or --seconds.")
    return out


def comparisons(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target's best inference-only and best end-to-end figure relative to the first target's,
    the way MONAI reported TensorRT: 1.45x for the model, 1.00x end to end."""
    targets = result.get("targets") or []
    if len(targets) < 2:
        return []

    def best(rows: Sequence[dict[str, Any]], index: int) -> float | None:
        values = [row["tiles_per_s"]["median"] for row in rows if row["target"] == index]
        return max(values) if values else None

    inference, e2e = result.get("inference") or [], result.get("end_to_end") or []
    ref_inf, ref_e2e = best(inference, 0), best(e2e, 0)
    out = []
    for index, target in enumerate(targets[1:], start=1):
        inf, end = best(inference, index), best(e2e, index)
        out.append({
            "label": target["label"],
            "reference": targets[0]["label"],
            "model_speedup": round(inf / ref_inf, 3) if inf and ref_inf else None,
            "end_to_end_speedup": round(end / ref_e2e, 3) if end and ref_e2e else None,
        })
    return out


def _noisy_figures(result: dict[str, Any]) -> list[str]:
    names = []
    for row in result.get("decode") or []:
        if is_noisy(row["tiles_per_s"]):
            names.append(f"decode {row['workers']} worker(s)")
    for row in result.get("inference") or []:
        if is_noisy(row["tiles_per_s"]):
            names.append(f"inference {row['label']} batch {row['batch_size']}")
    for row in result.get("end_to_end") or []:
        if is_noisy(row["tiles_per_s"]):
            names.append(f"end to end {row['label']} batch {row['batch_size']} workers {row['workers']}")
    for row in result.get("dense") or []:
        if is_noisy(row["tiles_per_s"]):
            names.append(f"dense {row['label']} workers {row['workers']}")
    naive = (result.get("naive") or {}).get("tiles_per_s")
    if is_noisy(naive):
        names.append("naive")
    return names


# -- rendering -------------------------------------------------------------------------------------
def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fig(figure: dict[str, Any] | None) -> str:
    """"42.2" for one repeat, "42.2 [41.0-43.5]" (median [min-max]) for several."""
    if not figure:
        return "-"
    text = _num(figure["median"])
    if figure.get("n", 1) > 1:
        text += f" [{_num(figure['min'])}-{_num(figure['max'])}]"
    return text


def sections(result: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) of every table, shared by the terminal and markdown renderings."""
    out = []
    naive = _median((result.get("naive") or {}).get("tiles_per_s"))
    decode = result.get("decode") or []
    if decode:
        out.append(("Decode only (tiles/s)", ["workers", "batch", "reader", "tiles/s"],
                    [[str(r["workers"]), str(r["batch_size"]), r["reader"], _fig(r["tiles_per_s"])] for r in decode]))
    inference = result.get("inference") or []
    if inference:
        rows = []
        for r in inference:
            x = _num(r["tiles_per_s"]["median"] / naive) if naive else "-"
            rows.append([r["label"], r["device"], str(r["batch_size"]), _fig(r["tiles_per_s"]), x])
        out.append(("Inference only (tiles/s, after warm-up)",
                    ["model", "device", "batch", "tiles/s", "x naive"], rows))
    e2e = result.get("end_to_end") or []
    if e2e:
        rows = []
        for r in e2e:
            v = r["verdict"]
            x = _num(r["tiles_per_s"]["median"] / naive) if naive else "-"
            eff = "-" if v["efficiency"] is None else f"{v['efficiency']:.2f}"
            of_inference = r.get("end_to_end_over_inference")
            rows.append([r["label"], str(r["batch_size"]), str(r["workers"]), str(r["tiles"]),
                         _fig(r["tiles_per_s"]), _num(r["slide_seconds"]["median"]), v["bound_by"] or "-", eff,
                         "-" if of_inference is None else f"{of_inference:.2f}", r.get("runtime_bottleneck") or "-", x])
        out.append(("End to end (fwrd-run pipeline: decode || inference, outputs written)",
                    ["model", "batch", "workers", "tiles", "tiles/s", "slide s", "bound by", "of bound",
                     "of inference", "runtime says", "x naive"], rows))
    dense = result.get("dense") or []
    if dense:
        rows = []
        for r in dense:
            agree = r.get("agreement") or {}
            rows.append([r["label"], str(r["workers"]), f"{r['region_side']} / {r['margin']}", str(r["regions"]),
                         f"{r['pixels_ratio']:.2f}", _fig(r["tiles_per_s"]), _num(r["slide_seconds"]["median"]),
                         _num(r["per_tile_tiles_per_s"]), "-" if r["speedup"] is None else f"{r['speedup']:.2f}",
                         "-" if agree.get("spearman") is None else f"{agree['spearman']:.3f}",
                         "-" if agree.get("max_abs_diff") is None else f"{agree['max_abs_diff']:.3f}"])
        out.append(("Dense scoring vs per tile (end to end, same slide and grid; tiles/s = grid points per second)",
                    ["model", "workers", "region / margin px", "regions", "tile px / region px", "dense tiles/s",
                     "slide s", "per-tile tiles/s", "dense x", "Spearman", "max |diff|"], rows))
    naive_row = result.get("naive")
    if naive_row:
        if naive_row.get("status") == "ok":
            rows = [[naive_row["description"], _fig(naive_row["tiles_per_s"])]]
        else:
            rows = [["skipped: " + naive_row.get("reason", ""), "-"]]
        out.append(("Naive baseline (OpenSlide read_region, numpy preprocessing, one tile at a time)",
                    ["loop", "tiles/s"], rows))
    memory = result.get("memory")
    if memory:
        rows = [[m["slide"], f"{m['dimensions'][0]}x{m['dimensions'][1]}", f"{m['peak_rss_mb']:.0f}"]
                for m in memory["slides"]]
        out.append((f"Peak memory of one fwrd-run process ({memory['label']}, batch {memory['batch_size']}, "
                    f"{memory['workers']} workers)", ["slide", "pixels", "peak RSS MiB"], rows))
    skipped = result.get("skipped") or []
    if skipped:
        out.append(("Skipped", ["what", "why"], [[s["what"], s["reason"]] for s in skipped]))
    return out


def _header_lines(result: dict[str, Any]) -> list[str]:
    m, s, cfg = result["machine"], result["slide"], result["settings"]
    gpus = ", ".join(g.get("name", "?") for g in m.get("gpus") or []) or "none"
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    kind = "synthetic" if s["synthetic"] else "given"
    return [
        f"Machine: {m['cpu']} ({m['physical_cores']} physical cores, {m['usable_cpus']} usable CPUs), "
        f"GPU: {gpus}",
        f"Versions: {versions}",
        f"Slide: {s['name']} ({kind}, {s['dimensions'][0]}x{s['dimensions'][1]} px, level {s['level']}), "
        f"{s['tile_size']} px tiles at stride {s['stride']}: {s['tiles']} tissue tiles, reader {s['reader']}",
        f"Each figure: median [min-max] of {cfg['repeats']} repeat(s); decode, inference and the naive loop "
        f"run ~{cfg['seconds']:g} s each, end to end scores the whole slide.",
        *(f"WARNING: {line}" for line in result.get("warnings") or []),
    ]


def render_text(result: dict[str, Any]) -> str:
    """The terminal report: header, aligned tables, verdict."""
    lines = [*_header_lines(result), ""]
    for title, headers, rows in sections(result):
        lines.append(title)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        for row in [headers, *rows]:
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        lines.append("")
    lines.append("Verdict")
    lines.extend(f"  {line}" for line in result["verdict"]["lines"])
    return "\n".join(lines) + "\n"


def render_markdown(result: dict[str, Any]) -> str:
    """A short markdown summary for benchmarks/results/ (the README links it)."""
    host = result["machine"]["host"]
    gpus = ", ".join(g.get("name", "?") for g in result["machine"].get("gpus") or [])
    title = f"# fwrd-bench: {gpus or result['machine']['cpu']} ({host}, {result['created'][:10]})"
    lines = [title, "", *(f"- {line}" for line in _header_lines(result)), "", "## Verdict", ""]
    lines.extend(f"- {line}" for line in result["verdict"]["lines"])
    for heading, headers, rows in sections(result):
        lines += ["", f"## {heading}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines.extend("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def results_stem(result: dict[str, Any]) -> str:
    """File name for benchmarks/results/: the GPU's name when there is one, else the CPU's and its cores,
    then the tile size ("gpu-nvidia-h100-80gb-hbm3-256px", "cpu-amd-epyc-2c-64px")."""
    machine = result["machine"]
    gpus = machine.get("gpus") or []
    base = f"gpu-{gpus[0].get('name', 'unknown')}" if gpus else f"cpu-{machine['cpu']}-{machine['physical_cores']}c"
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")
    return f"{slug}-{result['slide']['tile_size']}px"


def write_results(result: dict[str, Any], json_path: Path | None, markdown_path: Path | None) -> None:
    """Write the JSON record and/or the markdown summary atomically (folders are created)."""
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, finite_or_none(result))
    if markdown_path is not None:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        write_text(markdown_path, render_markdown(result))
