#!/usr/bin/python3
"""CI-sized scaling experiment (issue 7): runs deploy/experiments/scaling.py --ci (N = 1, 2, 4,
each process on its own network namespace) into OUT and checks what it wrote: scaling.csv has a
row for each N with positive throughput and p50 <= p99, a grid-search time and the cost model's
inputs; scaling.svg parses and holds the measured and predicted series.

Needs root and iproute2; otherwise it skips (exit 77) with a message, except as root under
CI=true, where a namespace that cannot be made is a failure.

ctest runs: /usr/bin/python3 scaling_test.py --bin build/bin --python build/python --out DIR
"""
import argparse
import csv
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import netns  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    reason = netns.netns_unavailable()
    if reason and not (os.environ.get("CI") == "true" and os.geteuid() == 0):
        print(f"scaling_test: SKIPPED: {reason}", file=sys.stderr)
        return 77
    for name in ("scaling.csv", "scaling.svg", "cost_model.csv", "cost_model.json"):
        if os.path.exists(os.path.join(a.out, name)):
            os.remove(os.path.join(a.out, name))
    # Popen, for the child's pid: its namespaces are named knns-<pid>-*.
    p = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "scaling.py"), "--ci", "--bin",
                          a.bin, "--python", a.python, "--out", a.out])
    try:
        p.wait(timeout=280)
    except subprocess.TimeoutExpired:
        p.terminate()
        p.wait(timeout=30)
    if p.returncode != 0:
        print(f"scaling_test: FAILED: scaling.py exited {p.returncode}", file=sys.stderr)
        return 1
    errors = []
    with open(os.path.join(a.out, "scaling.csv")) as f:
        rows = list(csv.DictReader(f))
    if [int(r["N"]) for r in rows] != [1, 2, 4]:
        errors.append(f"rows for N = {[r['N'] for r in rows]}, expected 1, 2, 4")
    for r in rows:
        try:
            v = {k: float(r[k]) for k in ("throughput_qps", "p50_ms", "p99_ms", "grid_s",
                                          "rtt_ms", "search_ms", "merge_ms", "pred_latency_ms",
                                          "pred_throughput_qps", "overhead_ms",
                                          "pred_loaded_latency_ms")}
        except ValueError as e:
            errors.append(f"N = {r['N']}: {e}")
            continue
        if not (v["throughput_qps"] > 0 and 0 < v["p50_ms"] <= v["p99_ms"] < 60_000):
            errors.append(f"N = {r['N']}: implausible throughput / latency {v}")
        if not (0 < v["grid_s"] < 600):
            errors.append(f"N = {r['N']}: grid search took {v['grid_s']} s")
        if not (v["rtt_ms"] > 0 and v["search_ms"] >= 0 and v["merge_ms"] > 0
                and v["overhead_ms"] >= 0 and v["pred_latency_ms"] > 0
                and v["pred_throughput_qps"] > 0):
            errors.append(f"N = {r['N']}: cost model inputs {v}")
        if int(r["shard_rows"]) * int(r["N"]) > int(r["train_rows"]):
            errors.append(f"N = {r['N']}: shard_rows {r['shard_rows']}")
    with open(os.path.join(a.out, "cost_model.csv")) as f:
        predicted = [int(r["N"]) for r in csv.DictReader(f)]
    if not {1, 2, 4, 8, 16}.issubset(predicted):
        errors.append(f"cost_model.csv predicts N = {predicted}")
    root = ET.parse(os.path.join(a.out, "scaling.svg")).getroot()
    if root.tag != SVG + "svg":
        errors.append(f"scaling.svg: root element {root.tag}")
    series = {g.get("id"): g for g in root.iter(SVG + "g") if g.get("class") == "series"}
    for sid in ("measured-throughput", "measured-p50", "measured-p99", "predicted-throughput",
                "predicted-latency", "predicted-loaded-latency"):
        if sid not in series:
            errors.append(f"scaling.svg: no series {sid}")
        elif series[sid].find(SVG + "polyline") is None:
            errors.append(f"scaling.svg: series {sid} has no line")
    for sid in ("measured-throughput", "measured-p50", "measured-p99"):
        if sid in series and len(series[sid].findall(SVG + "circle")) != 3:
            errors.append(f"scaling.svg: {sid} does not have 3 points")
    if root.find(f".//{SVG}g[@id='legend']") is None:
        errors.append("scaling.svg: no legend")
    left = [ns for ns in netns.namespace_names() if ns.startswith(f"knns-{p.pid}-")]
    if left:
        errors.append(f"namespaces left behind: {left}")
    for e in errors:
        print(f"scaling_test: {e}", file=sys.stderr)
    print(f"scaling_test: {'FAILED' if errors else 'OK'}: {len(rows)} rows, "
          f"{len(series)} series", flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
