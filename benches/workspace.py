#!/usr/bin/env python3
"""Workspace benchmark: five functions sharing the benchmark corpus.

Two layouts of the same five functions, measured in one run:
  layer  - the corpus's requirements in one [layers.deps] every function uses;
  own    - each function carries the corpus as its own [dependencies].
Against the single-function [dependencies] build of the same corpus:
  cold (all five, layer)  <= 1.3x the cold build of one
  cold (all five, own)    <= 1.6x the cold build of one (compressed once, copied five times)
  handler edit in one     <= the single-function edit + 20%
  no-op of the workspace  <= 2x make's no-op over the same files

Usage: python3 benches/workspace.py [-n N]   (reuses bench.py's corpus and wheelhouse)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

FUNCTIONS = ["alpha", "bravo", "charlie", "delta", "echo"]


def workspace_toml(layout: str, wheels: Path) -> str:
    out = [
        "[defaults]",
        'runtime = "python3.12"',
        'architecture = "x86_64"',
        f'dependencies = {{ find_links = ["{wheels}"], no_index = true }}',
        'output = { mtime = "fixed" }',
        "",
    ]
    if layout == "layer":
        out += ["[layers.deps]", 'requirements = "requirements.txt"', ""]
    for f in FUNCTIONS:
        out += [f"[functions.{f}]", f'handler = "{f}.app.handler"']
        out += [f'sources = {{ include = ["{f}/**/*.py"] }}']
        if layout == "layer":
            out += ['layers = ["deps"]']
        else:
            out += ['dependencies = { requirements = "requirements.txt" }']
        out += [""]
    return "\n".join(out)


def single_toml(wheels: Path) -> str:
    return bench.DEPS_TOML.format(wheels=wheels)


def make_project(root: Path, text: str, functions: list[str]) -> None:
    bench.rm(root, bench.STORE)
    root.mkdir(parents=True)
    (root / "lambda.toml").write_text(text)
    (root / "requirements.txt").write_text("\n".join(bench.PINS) + "\n")
    for f in functions:
        d = root / f if f else root
        d.mkdir(parents=True, exist_ok=True)
        if f:
            (d / "__init__.py").write_text("")
        (d / "app.py").write_text(bench.HANDLER.format(edit=0))


def run(exe: Path, cwd: Path, *args: str) -> float:
    t = time.perf_counter()
    subprocess.run([str(exe), *args], cwd=cwd, check=True, env=bench.deps_env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - t


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3)
    args = ap.parse_args()
    exe = bench.build_lbuild()
    bench.corpus_dir()
    wheels = bench.wheelhouse_dir()
    work = bench.WORK / "workspace"
    results: dict[str, float] = {}

    one = work / "one"
    # Warm-up: the installer's own cache, so no layout pays for it alone.
    make_project(one, single_toml(wheels), [""])
    run(exe, one)
    cold_one, edit_one, noop_one = [], [], []
    for i in range(args.n):
        make_project(one, single_toml(wheels), [""])
        cold_one.append(run(exe, one))
        (one / "app.py").write_text(bench.HANDLER.format(edit=i + 1))
        edit_one.append(run(exe, one))
        noop_one.append(run(exe, one))
    results["one: cold"] = median(cold_one)
    results["one: handler edit"] = median(edit_one)

    for layout in ("layer", "own"):
        ws = work / layout
        cold, edit, noop = [], [], []
        for i in range(args.n):
            make_project(ws, workspace_toml(layout, wheels), FUNCTIONS)
            cold.append(run(exe, ws))
            (ws / "charlie" / "app.py").write_text(bench.HANDLER.format(edit=i + 1))
            edit.append(run(exe, ws))
            noop.append(run(exe, ws))
        results[f"{layout}: cold (5 functions)"] = median(cold)
        results[f"{layout}: handler edit"] = median(edit)
        results[f"{layout}: no-op"] = median(noop)

    # make's no-op over the same inputs: the classic recipe's stamp rule
    # (requirements.txt and every function's sources as prerequisites).
    mk = work / "make"
    make_project(mk, "", FUNCTIONS)
    prereqs = ["requirements.txt"] + [f"{f}/app.py" for f in FUNCTIONS] + [f"{f}/__init__.py" for f in FUNCTIONS]
    (mk / "Makefile").write_text("all: stamp\nstamp: " + " ".join(prereqs) + "\n\ttouch stamp\n")
    subprocess.run(["make", "-s"], cwd=mk, check=True)
    make_runs = []
    for _ in range(max(args.n, 5)):
        t = time.perf_counter()
        subprocess.run(["make", "-s"], cwd=mk, check=True)
        make_runs.append(time.perf_counter() - t)
    results["make: no-op"] = median(make_runs)

    targets = [
        ("layer: cold (5 functions)", "one: cold", 1.3),
        ("own: cold (5 functions)", "one: cold", 1.6),
        ("layer: handler edit", "one: handler edit", 1.2),
        ("own: handler edit", "one: handler edit", 1.2),
        ("layer: no-op", "make: no-op", 2.0),
        ("own: no-op", "make: no-op", 2.0),
    ]
    print(f"{'measure':<28} {'seconds':>9}")
    for k, v in results.items():
        print(f"{k:<28} {v:>9.3f}")
    print()
    print(f"{'target':<28} {'ratio':>7} {'max':>5}  result")
    for k, base, limit in targets:
        ratio = results[k] / results[base]
        print(f"{k + ' / ' + base.split(':')[0]:<28} {ratio:>7.2f} {limit:>5}  {'PASS' if ratio <= limit else 'MISS'}")
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    (bench.RESULTS / "workspace.json").write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
