#!/usr/bin/env python3
"""Writes bench/REPORT.md and the charts in bench/charts/ from bench/results/*.json.

Each results file is one suite ("native", "js", "redis"), written by that
suite's runner in the same run, with throughput rows
{workload, cache, ops_per_sec, min, max} and the name of our entry under "ours".
"""
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
CHARTS = os.path.join(HERE, "charts")


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return ""


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return [
        ("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("cpu", f"{cpu} ({os.cpu_count()} cores)"),
        ("os", f"{platform.system()} {platform.release()}"),
        ("rustc", sh("rustc --version")),
        ("node", sh("node --version")),
        ("redis-server", sh("redis-server --version").split(" sha=")[0]),
    ]


def load(name):
    path = os.path.join(RESULTS, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def fmt_ops(x):
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"


def ours_for(suite, cache):
    """The entry of ours a peer is compared with: a suite may pair several
    (the JS suite compares its async API with async peers, its sync API with
    sync ones); by default every peer is compared with `ours`."""
    for comparison in suite.get("comparisons", []):
        if cache in comparison["peers"]:
            return comparison["ours"]
    return suite["ours"]


def throughput_table(suite, extra_cols=()):
    ours = suite["ours"]
    ours_names = {c["ours"] for c in suite.get("comparisons", [])} | {ours} | set(suite.get("variants", []))
    out = []
    workloads = []
    for row in suite["throughput"]:
        if row["workload"] not in workloads:
            workloads.append(row["workload"])
    for w in workloads:
        rows = [r for r in suite["throughput"] if r["workload"] == w]
        out.append(f"\n**{w}**\n")
        head = "| cache | ops/s (median) | spread (min-max) |" + "".join(f" {c} |" for c, _ in extra_cols) + " ours / this |"
        if suite.get("comparisons"):
            head = head.replace("ours / this", "ours (same kind of API) / this")
        out.append(head)
        out.append("|" + " --- |" * (head.count("|") - 1))
        for r in rows:
            mine = next((m for m in rows if m["cache"] == ours_for(suite, r["cache"])), None)
            ratio = f"{mine['ops_per_sec'] / r['ops_per_sec']:.2f}x" if mine and r["cache"] not in ours_names else "-"
            extras = "".join(f" {fn(r)} |" for _, fn in extra_cols)
            name = f"**{r['cache']}**" if r["cache"] in ours_names else r["cache"]
            out.append(f"| {name} | {fmt_ops(r['ops_per_sec'])} | {fmt_ops(r['min'])} - {fmt_ops(r['max'])} |{extras} {ratio} |")
    return out


def ratio_chart(suite, filename, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = suite["ours"]
    ours_names = {c["ours"] for c in suite.get("comparisons", [])} | {ours} | set(suite.get("variants", []))
    workloads = []
    for row in suite["throughput"]:
        if row["workload"] not in workloads:
            workloads.append(row["workload"])
    peers = []
    for row in suite["throughput"]:
        if row["cache"] not in ours_names and row["cache"] not in peers:
            peers.append(row["cache"])
    fig, ax = plt.subplots(figsize=(10, 0.9 + 0.55 * len(workloads) * max(1, len(peers)) / 2))
    height = 0.8 / max(1, len(peers))
    for i, peer in enumerate(peers):
        ys, xs = [], []
        for j, w in enumerate(workloads):
            mine = next(
                (r for r in suite["throughput"] if r["workload"] == w and r["cache"] == ours_for(suite, peer)), None
            )
            theirs = next((r for r in suite["throughput"] if r["workload"] == w and r["cache"] == peer), None)
            if mine and theirs:
                ys.append(j + i * height)
                xs.append(mine["ops_per_sec"] / theirs["ops_per_sec"])
        label = f"{ours_for(suite, peer)} vs {peer}" if suite.get("comparisons") else f"vs {peer}"
        ax.barh(ys, xs, height=height, label=label)
        for y, x in zip(ys, xs):
            ax.text(x, y, f" {x:.2f}x", va="center", fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([j + height * (len(peers) - 1) / 2 for j in range(len(workloads))])
    ax.set_yticklabels(workloads, fontsize=8)
    ax.invert_yaxis()
    who = "ours" if suite.get("comparisons") else ours
    ax.set_xlabel(f"throughput of {who} / throughput of peer (right of 1 = we are faster)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    fig.tight_layout()
    os.makedirs(CHARTS, exist_ok=True)
    fig.savefig(os.path.join(CHARTS, filename), dpi=110)
    plt.close(fig)


def hit_ratio_chart(native):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for curve in native["hit_ratio_curve"]:
        xs = [p["size"] for p in curve["points"]]
        ys = [p["hit_ratio"] for p in curve["points"]]
        ax.plot(xs, ys, marker="o", label=curve["cache"])
    ax.set_xscale("log")
    ax.set_xlabel(f"cache size (entries, of {native['key_space']} keys)")
    ax.set_ylabel("hit ratio")
    ax.set_title("Hit ratio against cache size, Zipf(0.99), cache-aside")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(CHARTS, exist_ok=True)
    fig.savefig(os.path.join(CHARTS, "hit_ratio.png"), dpi=110)
    plt.close(fig)


# libCacheSim 0.3.5 on the same replay (cache-aside, objects of size 1), hit %:
# the reference the hit-ratio targets are set against.
REFERENCE = {
    ("OLTP", 250): {"LRU": 16.47, "ARC": 21.23, "S3-FIFO": 21.68, "W-TinyLFU": 21.73, "SIEVE": 11.81, "Belady": 38.43},
    ("OLTP", 1000): {"LRU": 32.83, "ARC": 38.95, "S3-FIFO": 40.86, "W-TinyLFU": 31.86, "SIEVE": 32.56, "Belady": 53.61},
    ("OLTP", 2000): {"LRU": 42.47, "ARC": 46.08, "S3-FIFO": 47.03, "W-TinyLFU": 37.61, "SIEVE": 41.19, "Belady": 60.40},
    ("P3", 8192): {"LRU": 1.62, "ARC": 4.02, "S3-FIFO": 4.40, "W-TinyLFU": 4.58, "SIEVE": 2.95, "Belady": 11.25},
    ("P3", 65536): {"LRU": 12.72, "ARC": 26.89, "S3-FIFO": 30.09, "W-TinyLFU": 27.46, "SIEVE": 21.02, "Belady": 51.03},
    ("P3", 262144): {"LRU": 65.12, "ARC": 67.57, "S3-FIFO": 67.88, "W-TinyLFU": 63.99, "SIEVE": 61.19, "Belady": 77.80},
}


def traces_section():
    path = os.path.join(RESULTS, "traces.jsonl")
    if not os.path.exists(path):
        return []
    rows = {}
    policies = []
    with open(path) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            rows[(r["trace"], r["capacity"], r["policy"])] = r["hit_ratio"] * 100
            if r["policy"] not in policies:
                policies.append(r["policy"])
    cells = sorted({(t, c) for t, c, _ in rows}, key=lambda tc: (tc[0] != "OLTP", tc[1]))
    ref_names = ["ARC", "W-TinyLFU", "SIEVE", "Belady"]
    lines = [
        "",
        "## Hit ratio on real traces",
        "",
        "Hit % replaying the disk traces of the ARC paper cache-aside (get, set on a miss), through "
        "`MemoryStore` for ours and through each peer's own cache; the last columns are libCacheSim 0.3.5's "
        "figures for policies we do not ship, on the same replay (Belady's MIN is the offline optimum). "
        "The traces are from Nimrod Megiddo and Dharmendra S. Modha, \"ARC: A Self-Tuning, Low Overhead "
        "Replacement Cache,\" USENIX FAST 2003.",
        "",
        "| trace @ capacity |" + "".join(f" {p} |" for p in policies) + "".join(f" {n} (ref) |" for n in ref_names)
        + " best online (ref) |",
        "|" + " --- |" * (len(policies) + len(ref_names) + 2),
    ]
    for t, c in cells:
        ref = REFERENCE.get((t, c), {})
        best = max((v for k, v in ref.items() if k != "Belady"), default=None)
        line = f"| {t} @ {c:,} |"
        for p in policies:
            v = rows.get((t, c, p))
            line += f" {v:.2f} |" if v is not None else " |"
        for n in ref_names:
            line += f" {ref[n]:.2f} |" if n in ref else " |"
        line += f" {best:.2f} |" if best is not None else " |"
        lines.append(line)
    return lines


def js_redis_section():
    """bench/js/redis.mjs: the JS RedisStore against the raw clients, keyv and cache-manager on one server."""
    suite = load("js-redis")
    if not suite:
        return []
    load_avg = suite.get("load", {})
    fmt_load = lambda xs: " ".join(f"{x:.2f}" for x in xs or [])
    lines = ["", "## JS on Redis", ""]
    lines.append(
        f"`bench/js/redis.mjs`: get and set of a small object on one local redis-server, median of {suite['rounds']} interleaved rounds; "
        "\"raw\" is the bare client's GET/SET with JSON.stringify/parse; the last column compares a RedisStore with its own raw client. "
        f"Load average at the start: {fmt_load(load_avg.get('before'))}; at the end: {fmt_load(load_avg.get('after'))} (2 cores shared with other work)."
    )
    rows = list(suite["results"].values())
    for c in sorted({r["concurrency"] for r in rows}):
        for op in ("get", "set"):
            here = [r for r in rows if r["concurrency"] == c and r["op"] == op]
            if not here:
                continue
            raw = {r["base"]: r["opsPerSec"] for r in here if r.get("base")}
            lines += ["", f"**{op}, concurrency {c}**", "", "| client / store | ops/s (median) | / its raw client |", "| --- | --- | --- |"]
            for r in here:
                ratio = f"{r['opsPerSec'] / raw[r['vs']]:.2f}x" if r.get("vs") in raw else "-"
                name = f"**{r['name']}**" if r.get("vs") else r["name"]
                lines.append(f"| {name} | {fmt_ops(r['opsPerSec'])} | {ratio} |")
    return lines


def main():
    lines = ["# Benchmark report", "", "Written by `bash scripts/bench.sh`; every figure below comes from one run on this machine.", ""]
    lines += ["| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in machine()]
    charts = True
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        charts = False
        print("matplotlib missing: report without charts", file=sys.stderr)

    native = load("native")
    if native:
        lines += ["", "## Native Rust", ""]
        lines.append(
            f"Zipf(0.99) over {native['key_space']:,} keys, capacity {native['capacity']:,}, "
            f"{native['trace_len']:,} operations per run after a warm-up pass; median of {native['repeats']} runs. "
            "Every cache runs the same trace; ours has its metrics on."
        )
        if native.get("load_average_start"):
            lines.append("")
            lines.append(
                f"Load average (1, 5, 15 min) at the start of the run: {native['load_average_start']}; "
                f"at the end: {native.get('load_average_end', '?')} (2 cores shared with other work)."
            )
        lines += throughput_table(native, [("hit ratio", lambda r: f"{r['hit_ratio']:.3f}")])
        lines += ["", "**Hit ratio against cache size** (cache-aside on a Zipf trace)", ""]
        sizes = [p["size"] for p in native["hit_ratio_curve"][0]["points"]]
        lines.append("| cache |" + "".join(f" {s:,} |" for s in sizes))
        lines.append("|" + " --- |" * (len(sizes) + 1))
        for c in native["hit_ratio_curve"]:
            lines.append(f"| {c['cache']} |" + "".join(f" {p['hit_ratio']:.3f} |" for p in c["points"]))
        if charts:
            ratio_chart(native, "native_ratio.png", "Native: pepperpy MemoryStore against each peer")
            hit_ratio_chart(native)
            lines += ["", "![native ratios](charts/native_ratio.png)", "", "![hit ratio](charts/hit_ratio.png)"]

    lines += traces_section()

    for name, title in (("js", "JS in Node"), ("redis", "Redis")):
        suite = load(name)
        if not suite:
            continue
        lines += ["", f"## {title}", "", suite.get("description", "")]
        lines += throughput_table(suite)
        for extra in suite.get("extra_markdown", []):
            lines.append(extra)
        if charts:
            ratio_chart(suite, f"{name}_ratio.png", f"{title}: ours against each peer")
            lines += ["", f"![{name} ratios](charts/{name}_ratio.png)"]

    lines += js_redis_section()

    # Figures measured by hand (bench/native -- tags, bench/redis -- tags, bench/js/tags.mjs).
    tags = os.path.join(HERE, "results", "tags.md")
    if os.path.exists(tags):
        with open(tags) as f:
            lines += ["", f.read().rstrip("\n")]

    with open(os.path.join(HERE, "REPORT.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote bench/REPORT.md")


if __name__ == "__main__":
    main()
