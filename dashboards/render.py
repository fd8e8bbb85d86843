#!/usr/bin/env python3
"""Draws each dashboard as an officer would see it, from a real Prometheus.

Runs `ddtwatch demo` (the simulated deployments, no Kafka), lets a real Prometheus scrape it,
then runs every panel's queries against that Prometheus (variables set to "All", as Grafana does)
and draws the panels on their grid: time series as lines, stats as numbers (with their value
mappings), tables as rows, state timelines as coloured bands. Grafana itself cannot be installed
here; this shows the same data with the same titles, units and mappings.

    python3 dashboards/render.py [--seconds 90] [--bin target/debug/ddtwatch]

Needs matplotlib (scripts/test's venv has it: ~/.cache/ddtwatch-tools/venv/bin/python) and the
`prometheus` binary. Writes dashboards/img/<dashboard>.png.
"""

import argparse
import json
import math
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
STATE_COLOURS = {"red": "#d44a3a", "green": "#37872d", "yellow": "#e0b400", "orange": "#ff9830", "text": "#8e8e8e"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def wait_for(what, f, timeout):
    start = time.time()
    while True:
        try:
            if f():
                return
        except OSError:
            pass
        if time.time() - start > timeout:
            sys.exit(f"render.py: timed out waiting for {what}")
        time.sleep(0.5)


def substitute(expr, rate_window):
    for var, val in [("$deployment", ".*"), ("$job", ".*"), ("$instance", ".*"),
                     ("$__rate_interval", rate_window), ("$__range", "5m")]:
        expr = expr.replace(var, val)
    return expr


def legend(fmt, metric):
    out = fmt
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    while "{{" in out:  # a label the series does not have
        a = out.index("{{")
        b = out.index("}}", a)
        out = out[:a] + out[b + 2:]
    return " ".join(out.split()) or metric.get("__name__", "value")


def mapped(panel, value):
    for m in panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
        opt = m.get("options", {}).get(str(int(value)) if value == int(value) else str(value))
        if opt:
            return opt["text"], STATE_COLOURS.get(opt.get("color"), opt.get("color"))
    return None


def fmt_value(v, unit):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "no data"
    if unit == "percentunit":
        return f"{v * 100:.2f}%"
    if unit == "s":
        return f"{v:.1f} s" if v < 120 else f"{v / 60:.1f} min"
    if unit == "bytes":
        return f"{v / 1e6:.1f} MB"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def draw(ax, panel, prom, start, end):
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    kind = panel["type"]
    ax.set_title(panel["title"], fontsize=8, loc="left")
    ax.tick_params(labelsize=6)
    series = []
    for t in panel["targets"]:
        q = substitute(t["expr"], "30s")
        if kind in ("timeseries", "state-timeline", "heatmap"):
            r = get(f"{prom}/api/v1/query_range?" + urllib.parse.urlencode(
                {"query": q, "start": start, "end": end, "step": 2}))
            for s in r["data"]["result"][:12]:
                pts = [(float(x), float(y)) for x, y in s["values"] if y not in ("NaN", "+Inf", "-Inf")]
                series.append((legend(t.get("legendFormat", ""), s["metric"]), pts))
        else:
            r = get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": q, "time": end}))
            for s in r["data"]["result"][:12]:
                series.append((legend(t.get("legendFormat", ""), s["metric"]), float(s["value"][1])))
    if not series:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=9, color="#8e8e8e", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if kind == "timeseries":
        for name, pts in series:
            if pts:
                ax.plot([p[0] - start for p in pts], [p[1] for p in pts], label=name[:40], linewidth=1)
        ax.set_xlabel("seconds", fontsize=6)
        if unit:
            ax.set_ylabel(unit, fontsize=6)
        ax.legend(fontsize=5, loc="upper left")
    elif kind == "heatmap":
        for name, pts in series:
            if pts:
                ax.plot([p[0] - start for p in pts], [p[1] for p in pts], linewidth=0.8)
        ax.set_xlabel("seconds", fontsize=6)
    elif kind == "state-timeline":
        ax.set_yticks([])
        for i, (name, pts) in enumerate(series):
            for (x0, v), (x1, _) in zip(pts, pts[1:] + [(end, None)]):
                m = mapped(panel, v)
                ax.barh(i, x1 - x0, left=x0 - start, color=m[1] if m else "#5794f2", height=0.8)
            # The row's name and its latest state in words, on the band.
            last = mapped(panel, pts[-1][1]) if pts else None
            label = f"{name[:40]}: {last[0]}" if last else name[:40]
            if pts:
                ax.text(pts[0][0] - start + 1, i, label, fontsize=6, va="center", color="black")
        ax.set_xlabel("seconds", fontsize=6)
    else:  # stat, table, bargauge: the latest values
        ax.set_xticks([])
        ax.set_yticks([])
        rows = series[:8]
        for i, (name, v) in enumerate(rows):
            m = mapped(panel, v)
            text, colour = (m[0], m[1]) if m else (fmt_value(v, unit), "#1f1f1f")
            y = 0.85 - i * (0.8 / max(len(rows), 1))
            ax.text(0.02, y, name[:38], fontsize=6, transform=ax.transAxes, va="center")
            ax.text(0.98, y, text, fontsize=9 if len(rows) < 4 else 7, transform=ax.transAxes, va="center",
                    ha="right", color=colour, weight="bold")


def render(board_file, prom, start, end, out):
    d = json.loads((HERE / board_file).read_text())
    panels = d["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(16, rows * 0.42))
    fig.suptitle(d["title"], fontsize=12, x=0.01, y=0.995, ha="left", va="top")
    for p in panels:
        g = p["gridPos"]
        top = 0.96  # room for the dashboard's title
        ax = fig.add_axes([g["x"] / 24 + 0.005, top * (1 - (g["y"] + g["h"]) / rows) + 0.01,
                           g["w"] / 24 - 0.012, top * g["h"] / rows - 0.035])
        draw(ax, p, prom, start, end)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=90, help="how long Prometheus scrapes the demo")
    ap.add_argument("--bin", default=str(HERE.parent / "target/debug/ddtwatch"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ddtwatch-render-"))
    port, prom_port = free_port(), free_port()
    demo = subprocess.Popen([args.bin, "demo", "--listen", f"127.0.0.1:{port}", "--speed", "300"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [\"{HERE / 'rules/ddtwatch.rules.yml'}\"]\n"
        "scrape_configs:\n  - job_name: ddtwatch\n"
        f"    static_configs: [{{targets: [\"127.0.0.1:{port}\"]}}]\n")
    prom = subprocess.Popen(["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{prom_port}"
    try:
        wait_for("Prometheus", lambda: get(f"{base}/api/v1/query?query=up")["status"] == "success", 60)
        start = time.time()
        print(f"render.py: scraping the demo for {args.seconds} s", file=sys.stderr)
        while time.time() - start < args.seconds:
            time.sleep(1)
        end = time.time()
        (HERE / "img").mkdir(exist_ok=True)
        for board in ["overview.json", "deployment.json", "fairness.json", "drift.json", "health.json"]:
            out = HERE / "img" / board.replace(".json", ".png")
            render(board, base, start, end, out)
            print(f"render.py: wrote {out.relative_to(HERE.parent)}", file=sys.stderr)
    finally:
        demo.terminate()
        prom.terminate()
        demo.wait()
        prom.wait()


if __name__ == "__main__":
    main()
