#!/usr/bin/env python3
"""Lockfile benchmark: a warm-cache install from uv.lock against bare uv.

    python3 benches/lockfile.py          # 5 repetitions (medians)
    python3 benches/lockfile.py -n 9

Reuses bench.py's corpus wheelhouse (benches/.corpus/). The corpus's pins
become a project's [project.dependencies]; `uv lock` (offline, against the
wheelhouse) writes its uv.lock; lambda.toml says `lock = "uv.lock"`.

Measured side by side, interleaved, with the same warm uv cache:
  lbuild  - the deps stage from uv.lock: lbuild resolves the lock for the
            target, writes the pinned list with hashes and runs uv, then
            normalises and hashes the tree (the package is cached: its
            record is kept, only the deps stage's records and tree are
            removed before each run, so the run is the install, not zip);
  uv      - `uv pip install --target` of the same pins with the same
            flags (--no-deps --require-hashes, the target's platform and
            Python, --only-binary :all:, --link-mode copy, no byte-code,
            the wheelhouse with --no-index).
Target: lbuild <= 1.2x uv (wall and CPU; CPU includes uv's own, as
children of lbuild). Writes benches/results/lockfile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

TARGET_RATIO = 1.2
UV_PLATFORM = "x86_64-manylinux_2_34"  # lbuild's for python3.12 x86_64

PYPROJECT = """\
[project]
name = "bench"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = [
{deps}
]

[tool.uv]
environments = ["python_full_version >= '3.12' and sys_platform == 'linux' and platform_machine == 'x86_64'"]
"""

LAMBDA_TOML = """\
[function]
name = "bench"
handler = "app.handler"
runtime = "python3.12"
architecture = "x86_64"

[sources]
include = ["app.py"]

[dependencies]
lock = "uv.lock"
find_links = ["{wheels}"]
no_index = true

[output]
path = "dist/bench.zip"
mtime = "fixed"
"""


def uv_env(cache: Path) -> dict[str, str]:
    env = bench.deps_env()
    env["UV_CACHE_DIR"] = str(cache)
    return env


def pins_from_lock(lock: Path) -> str:
    """`name==version --hash=...` per package of the lock (not the root)."""
    data = tomllib.loads(lock.read_text())
    lines = []
    for p in data["package"]:
        if "registry" not in p.get("source", {}):
            continue
        hashes = " ".join(f"--hash={w['hash']}" for w in p.get("wheels", []))
        lines.append(f"{p['name']}=={p['version']} {hashes}")
    return "\n".join(sorted(lines)) + "\n"


def forget_deps(project: Path) -> None:
    """Drops the deps stage's records and trees (the package's stay)."""
    db = sqlite3.connect(project / ".lbuild" / "cache.sqlite")
    db.execute("DELETE FROM stages WHERE stage = 'deps'")
    db.commit()
    db.close()
    bench.rm(project / ".lbuild" / "deps")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5)
    args = ap.parse_args()
    exe = bench.build_lbuild()
    wheels = bench.wheelhouse_dir()
    work = bench.WORK / "lockfile"
    project = work / "project"
    cache = work / "uv-cache"
    target = work / "uv-target"
    bench.rm(project)
    project.mkdir(parents=True)
    (project / "app.py").write_text("def handler(event, context):\n    return 1\n")
    deps = "\n".join(f'    "{p}",' for p in bench.PINS)
    (project / "pyproject.toml").write_text(PYPROJECT.format(deps=deps))
    env = uv_env(cache)
    bench.log("uv lock (offline, against the wheelhouse)")
    subprocess.run(
        # The running Python resolves (3.11+); the environments marker
        # limits the lock to Lambda's python3.12 x86_64 Linux.
        ["uv", "lock", "--python", sys.executable, "--offline", "--no-index",
         "--find-links", str(wheels)],
        cwd=project, env=env, check=True, capture_output=True,
    )  # fmt: skip
    # uv records no hash for a wheel found in a local directory; a lock
    # against PyPI has one per wheel, and both sides then check them.
    lock = project / "uv.lock"
    text = lock.read_text()
    for whl in sorted(wheels.glob("*.whl")):
        text = text.replace(
            f'{{ path = "{whl}" }}', f'{{ path = "{whl}", hash = "sha256:{bench.sha256(whl)}" }}'
        )
    lock.write_text(text)
    (project / "lambda.toml").write_text(LAMBDA_TOML.format(wheels=wheels))
    pins = work / "pins.txt"
    pins.write_text(pins_from_lock(project / "uv.lock"))
    uv_cmd = [
        "uv", "pip", "install", "--target", str(target),
        "--python-platform", UV_PLATFORM, "--python-version", "3.12",
        "--only-binary", ":all:", "--no-installer-metadata", "--no-compile-bytecode",
        "--link-mode", "copy", "-r", str(pins), "--no-deps", "--require-hashes",
        f"--find-links={wheels}", "--no-index",
    ]  # fmt: skip
    lb_cmd = [str(exe), "--json"]

    bench.log("warming up (uv cache, lbuild's package record)")
    bench.timed(lb_cmd, project, env=env)
    bench.rm(target)
    bench.timed(uv_cmd, work, env=env)

    runs: dict[str, list[bench.Run]] = {"lbuild": [], "uv": []}
    deps_ms: list[float] = []
    for i in range(args.n):
        forget_deps(project)
        r = bench.timed(lb_cmd, project, env=env)
        report = json.loads(r.stdout)
        d = bench.stage(report, "deps")
        p = bench.stage(report, "package")
        if d["status"] != "ran" or not d["details"].get("installer_ran"):
            raise SystemExit(f"lbuild did not install: {d}")
        if p["status"] != "cached":
            raise SystemExit(f"the package was not cached: {p}")
        runs["lbuild"].append(r)
        deps_ms.append(d["ms"])
        bench.rm(target)
        runs["uv"].append(bench.timed(uv_cmd, work, env=env))
        bench.log(f"run {i + 1}/{args.n}: lbuild {r.wall:.3f}s (cpu {r.cpu:.3f}s), uv {runs['uv'][-1].wall:.3f}s (cpu {runs['uv'][-1].cpu:.3f}s)")
    s = bench.summarize(runs)
    lw, uw = s["lbuild"]["wall_median_s"], s["uv"]["wall_median_s"]
    lc, uc = s["lbuild"]["cpu_median_s"], s["uv"]["cpu_median_s"]
    files = sum(1 for _ in target.rglob("*") if _.is_file())
    out = {
        "n": args.n,
        "packages": len(pins.read_text().splitlines()),
        "files": files,
        "loadavg": bench.loadavg(),
        "lbuild": s["lbuild"],
        "lbuild_deps_stage_ms": bench.med(deps_ms),
        "uv": s["uv"],
        "ratio_wall": lw / uw,
        "ratio_cpu": lc / uc,
        "target": TARGET_RATIO,
    }
    print(f"warm-cache install from uv.lock: {out['packages']} packages, {files} files, n={args.n}")
    print(f"  {'':<28}{'wall':>9}{'cpu':>9}")
    print(f"  {'lbuild (deps stage)':<28}{bench.fmt_s(lw):>9}{bench.fmt_s(lc):>9}   (stage alone: {out['lbuild_deps_stage_ms']:.0f} ms)")
    print(f"  {'uv pip install --target':<28}{bench.fmt_s(uw):>9}{bench.fmt_s(uc):>9}")
    print(f"  ratio wall {out['ratio_wall']:.2f}x, cpu {out['ratio_cpu']:.2f}x (target <= {TARGET_RATIO}x): "
          f"{bench.verdict(out['ratio_wall'] <= TARGET_RATIO and out['ratio_cpu'] <= TARGET_RATIO)}")
    print(f"  load average {out['loadavg']}")
    bench.RESULTS.mkdir(exist_ok=True)
    (bench.RESULTS / "lockfile.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
