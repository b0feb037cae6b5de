#!/usr/bin/env python3
"""Cross-layer fusion on/off, interleaved: LeNet inference at batch 64 and 1, one LeNet training step at batch 128.
Usage: cargo build --release && python3 scripts/bench_fusion.py [pairs]  (BENCHMARKS.md, Issue 12)."""
import json, subprocess, statistics, sys
import os
B = os.path.join(os.path.dirname(__file__), "..", "target", "release", "cryptgpu")
def run(args):
    out = subprocess.run([B] + args + ["--json"], capture_output=True, text=True, cwd=os.path.join(os.path.dirname(__file__), ".."))
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr); raise SystemExit(1)
    lines = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
    return lines[-1]
cases = {
  "infer b64": ["infer", "--random-weights", "--random-input", "64", "--batch", "64"],
  "infer b1": ["infer", "--random-weights", "--random-input", "1", "--batch", "1"],
  "train 1 step b128": ["train", "--steps", "1", "--batch", "128", "--eval", "10"],
}
pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
for name, args in cases.items():
    res = {"fused": [], "unfused": []}
    for i in range(pairs):
        order = ["fused", "unfused"] if i % 2 == 0 else ["unfused", "fused"]
        for o in order:
            r = run(args + ([] if o == "fused" else ["--no-fusion"]))
            res[o].append(r)
    for o in ["unfused", "fused"]:
        w = [r["wall_s"] for r in res[o]]
        rs = {r["rounds"] for r in res[o]}; bs = {r["bytes"] for r in res[o]}
        print(f"{name} {o}: rounds {sorted(rs)} bytes {sorted(bs)} wall median {statistics.median(w):.3f} s range {min(w):.3f}-{max(w):.3f} (n={len(w)})", flush=True)
