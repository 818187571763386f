#!/usr/bin/env python3
"""Save-to-new-zip latency of `lbuild watch`.

Starts `lbuild watch --json` on PROJECT_DIR, then N times: appends a
comment line to the handler module, and times from just before the write
until the JSON line reporting a zip with a new sha256 arrives (that line is
printed after the zip is renamed into place). Reports median and p95, and
the build's own `ms` beside it (the rest is debounce + event delivery).

The handler file is restored when the run ends. Only the standard library
is used (Python >= 3.11 for tomllib).

    python3 benches/watch_latency.py examples/hello
    python3 benches/watch_latency.py path/to/corpus --edits 20 --lbuild target/release/lbuild --json

On the 145 MB benchmark corpus: lay it out as benches/bench.py does (into
benches/.work/lbuild, the corpus as plain sources), then point this at it:

    python3 -c "import sys; sys.path.insert(0, 'benches'); import bench; \
        bench.Layout(bench.corpus_dir(), [6])"
    python3 benches/watch_latency.py benches/.work/lbuild
"""

import argparse
import json
import math
import os
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

LINE_TIMEOUT_S = 120.0


def handler_file(project: Path) -> Path:
    manifest = tomllib.loads((project / "lambda.toml").read_text())
    handler = manifest["function"]["handler"]
    root = project / manifest.get("sources", {}).get("root", ".")
    module = handler.rsplit(".", 1)[0].replace(".", "/")
    for candidate in (root / f"{module}.py", root / module / "__init__.py"):
        if candidate.is_file():
            return candidate
    sys.exit(f"handler module for {handler!r} not found under {root}")


def default_lbuild() -> str:
    here = Path(__file__).resolve().parent.parent
    for build in ("release", "debug"):
        candidate = here / "target" / build / "lbuild"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("lbuild")
    if not found:
        sys.exit("no lbuild binary: run `cargo build --release` or pass --lbuild")
    return found


def percentile(values, p):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", type=Path, help="directory holding lambda.toml")
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--lbuild", default=None, help="lbuild binary (default: target/release/lbuild)")
    ap.add_argument("--debounce-ms", type=int, default=None, help="passed to lbuild watch")
    ap.add_argument("--poll", action="store_true", help="pass --poll to lbuild watch")
    ap.add_argument("--pause-ms", type=int, default=300, help="pause between edits")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args()

    project = args.project.resolve()
    target = handler_file(project)
    original = target.read_bytes()
    cmd = [args.lbuild or default_lbuild(), "watch", "--json"]
    if args.debounce_ms is not None:
        cmd += ["--debounce-ms", str(args.debounce_ms)]
    if args.poll:
        cmd.append("--poll")

    proc = subprocess.Popen(
        cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: "queue.Queue[dict]" = queue.Queue()

    def read_stdout():
        for line in proc.stdout:
            lines.put(json.loads(line))

    def drain_stderr():
        for line in proc.stderr:
            sys.stderr.write(f"  lbuild: {line}")

    threading.Thread(target=read_stdout, daemon=True).start()
    threading.Thread(target=drain_stderr, daemon=True).start()

    def next_line() -> dict:
        try:
            v = lines.get(timeout=LINE_TIMEOUT_S)
        except queue.Empty:
            sys.exit(f"no line from lbuild watch within {LINE_TIMEOUT_S} s")
        if "error" in v:
            sys.exit(f"lbuild watch reported an error: {v['error']}")
        return v

    latencies, build_ms = [], []
    try:
        first = next_line()
        sha = first["sha256"]
        print(
            f"initial build: {first['ms']} ms, {first['size']} bytes, {first['entries']} entries",
            file=sys.stderr,
        )
        for i in range(args.edits):
            time.sleep(args.pause_ms / 1000)
            content = original + f"\n# lbuild watch latency edit {i} {time.time_ns()}\n".encode()
            t0 = time.perf_counter()
            target.write_bytes(content)
            while True:
                v = next_line()
                if v["sha256"] != sha:
                    break
            latency = (time.perf_counter() - t0) * 1000
            sha = v["sha256"]
            latencies.append(latency)
            build_ms.append(v["ms"])
            print(f"edit {i + 1:2}: {latency:7.1f} ms (build {v['ms']} ms)", file=sys.stderr)
    finally:
        target.write_bytes(original)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()

    summary = {
        "project": str(project),
        "edits": len(latencies),
        "median_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "min_ms": round(min(latencies), 1),
        "max_ms": round(max(latencies), 1),
        "build_median_ms": statistics.median(build_ms),
        "build_p95_ms": percentile(build_ms, 95),
        "zip_bytes": v["size"],
        "entries": v["entries"],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"save-to-new-zip latency over {summary['edits']} edits of {target.relative_to(project)}: "
            f"median {summary['median_ms']} ms, p95 {summary['p95_ms']} ms "
            f"(min {summary['min_ms']}, max {summary['max_ms']}); "
            f"build alone: median {summary['build_median_ms']} ms, p95 {summary['build_p95_ms']} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
