#!/usr/bin/env python3
"""Workspace scale benchmark (issue 22): N functions and one dependency layer.

The workspace: N functions under one `src` root, each with 11 files of its
own (src/fnNNN/...) and the same 31 shared files (src/shared/...), every
function using one dependency layer whose requirements are the benchmark
corpus (bench.py's pins, ~137 MB installed; `--quick`: a ~1 MB subset).
Against make over the same files: a generated Makefile with the classic
recipe (the layer: `uv pip install --target` + `zip -r`, a stamp on
requirements.txt; each function: copy its files and the shared ones into a
staging directory, `zip -r`), run with `make -j CPUS`.

Measured as whole processes (wall, wait4), median of -n runs, per N:
  cold        empty machine store, empty .lbuild, warm installer (uv) cache
  cold-store  empty .lbuild and dist, warm machine store
  noop        nothing changed (every file's fingerprint trusted)
  edit-one    one function's handler module edited: that function rebuilds
  edit-shared one shared module edited: every function rebuilds
and the same for make (cold: build/ and dist/ removed). N=1 is always
measured too: the single-function baseline of the targets. Then
`lbuild watch --json` on the largest N: save -> new zip line, p50/p95 (see
watch_latency.py; in a workspace the line comes after every artifact was
checked). Then `sam build --cached --parallel` at 40 functions if `sam` is
on PATH (reported, not a target; skipped with a note otherwise).

Targets (issue 22), reported PASS/MISS, never asserted:
  noop(80) <= 2x make's noop(80); edit-one(40) <= 1.2x edit-one(1);
  cold-store(40) <= 2x cold-store(1); watch p50 at the largest N <= 200 ms.

    python3 benches/workspace_scale.py --quick             # a few minutes
    python3 benches/workspace_scale.py                     # full: N=5,20,40,80
    python3 benches/workspace_scale.py --sizes 5,40,80 --measures noop,edit-one
    python3 benches/workspace_scale.py --lbuild target/debug/lbuild --keep

Python 3.11+ standard library only, plus make, zip and uv on PATH. The
corpus's wheels are downloaded once into benches/.corpus/ (git-ignored;
bench.py's wheelhouse). The workspaces live in benches/.work/scale/ and the
results go to benches/results/workspace_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (corpus pins, wheelhouse, timed(), build_lbuild())

WORK = bench.WORK / "scale"
# The machine store of every lbuild run here (bench.py set LBUILD_STORE to
# bench.STORE on import; this benchmark keeps its own beside its projects).
STORE = WORK / "store"
os.environ["LBUILD_STORE"] = str(STORE)

# --quick's layer: requests and its dependencies, PyYAML, jinja2 (~1 MB).
QUICK_PINS = [
    p for p in bench.PINS
    if p.split("==")[0].lower() in
    {"requests", "certifi", "charset-normalizer", "idna", "urllib3", "pyyaml", "jinja2", "markupsafe"}
]  # fmt: skip

MEASURES = ["cold", "cold-store", "noop", "edit-one", "edit-shared"]
OWN_FILES = 11
SHARED_FILES = 31
# The module every edit-one run edits (in the first function), and the one
# every edit-shared run edits.
EDIT_ONE = "app.py"
EDIT_SHARED = "shared/log/format.py"

TARGET_NOOP_VS_MAKE = 2.0  # noop(80) / make noop(80)
TARGET_EDIT_VS_ONE = 1.2  # edit-one(40) / edit-one(1)
TARGET_COLD_STORE_VS_ONE = 2.0  # cold-store(40) / cold-store(1)
TARGET_WATCH_P50_MS = 200.0


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ layout


def fn_name(i: int) -> str:
    return f"fn{i:03d}"


def module_text(package: str, module: str, edit: int = 0, lines: int = 40) -> str:
    """A plausible module of ~1-2 KB, different per path (so no two files
    share content and the reuse index cannot collapse them)."""
    out = [f'"""{package}.{module}: generated for the workspace scale benchmark."""', ""]
    out += ["import json", "import logging", "", "LOG = logging.getLogger(__name__)", ""]
    for k in range(lines // 8):
        out += [
            f"def {module}_step_{k}(event: dict, scale: int = {k + 1}) -> dict:",
            f'    """Step {k} of {package}.{module}."""',
            f'    value = event.get("{module}_{k}", {k}) * scale',
            f'    LOG.debug("%s %s", "{package}.{module}", value)',
            f'    return {{"step": {k}, "value": value, "where": "{package}.{module}"}}',
            "",
        ]
    out += [f"EDIT = {edit}", ""]
    return "\n".join(out)


def handler_text(name: str, edit: int = 0) -> str:
    return (
        f'"""{name}: handler."""\n\nimport json\n\nfrom shared.log import format as logfmt\n'
        f"from {name}.handlers import create, read\n\n\n"
        "def handler(event, context):\n"
        f'    return {{"statusCode": 200, "body": json.dumps({{"fn": "{name}", "edit": EDIT}})}}\n\n\n'
        f"EDIT = {edit}\n"
    )


def own_files(name: str) -> dict[str, str]:
    """The 11 files of one function, relative to src/."""
    files = {f"{name}/__init__.py": "", f"{name}/app.py": handler_text(name)}
    files[f"{name}/handlers/__init__.py"] = ""
    for m in ("create", "read", "update", "delete"):
        files[f"{name}/handlers/{m}.py"] = module_text(f"{name}.handlers", m)
    for m in ("models", "schemas", "service", "errors"):
        files[f"{name}/{m}.py"] = module_text(name, m)
    assert len(files) == OWN_FILES
    return files


def shared_files() -> dict[str, str]:
    """The 31 shared files: shared/__init__.py and six subpackages of five."""
    files = {"shared/__init__.py": ""}
    for sub, mods in {
        "db": ("session", "models", "queries", "migrations"),
        "http": ("client", "retry", "headers", "errors"),
        "auth": ("tokens", "claims", "policy", "keys"),
        "log": ("format", "context", "metrics", "tracing"),
        "config": ("env", "secrets", "flags", "defaults"),
        "events": ("parse", "schema", "sqs", "sns"),
    }.items():
        files[f"shared/{sub}/__init__.py"] = ""
        for m in mods:
            files[f"shared/{sub}/{m}.py"] = module_text(f"shared.{sub}", m, lines=80)
    assert len(files) == SHARED_FILES
    return files


def lambda_toml(n: int, wheels: Path) -> str:
    out = [
        "[defaults]",
        'runtime = "python3.12"',
        'architecture = "x86_64"',
        'sources = { root = "src" }',
        f'dependencies = {{ find_links = ["{wheels}"], no_index = true }}',
        'output = { mtime = "fixed" }',
        "",
        "[layers.deps]",
        'requirements = "requirements.txt"',
        "",
    ]
    for i in range(n):
        f = fn_name(i)
        out += [
            f"[functions.{f}]",
            f'handler = "{f}.app.handler"',
            f'sources = {{ include = ["{f}/**/*.py", "shared/**/*.py"] }}',
            'layers = ["deps"]',
            "",
        ]
    return "\n".join(out)


def makefile(n: int, wheels: Path, shared: list[str], cpus: int) -> str:
    """The classic recipe over the same files (one rule per zip)."""
    uv_target = [
        "--python-platform", "x86_64-manylinux_2_28", "--python-version", "3.12",
        "--only-binary", ":all:", "--no-index", "--find-links", str(wheels),
        "--no-compile-bytecode", "--link-mode", "copy", "--quiet",
    ]  # fmt: skip
    out = [
        "# Generated by benches/workspace_scale.py: the classic recipe.",
        "MAKEFLAGS += --no-builtin-rules",
        ".SUFFIXES:",
        "SHARED := " + " ".join(f"src/{p}" for p in shared),
        "",
        "all: dist/layers/deps.zip " + " ".join(f"dist/{fn_name(i)}.zip" for i in range(n)),
        "",
        "# The layer: install the requirements, zip python/ (pip -t in real life).",
        "dist/layers/deps.zip: requirements.txt",
        "\trm -rf build/layers/deps && mkdir -p build/layers/deps/python dist/layers",
        "\tuv pip install " + " ".join(uv_target) + " --target build/layers/deps/python -r requirements.txt",
        "\trm -f $@ && cd build/layers/deps && zip -q -X -r ../../../$@ python",
        "",
    ]
    for i in range(n):
        f = fn_name(i)
        own = " ".join(f"src/{p}" for p in sorted(own_files(f)))
        out += [
            f"{f.upper()} := {own}",
            f"dist/{f}.zip: $({f.upper()}) $(SHARED)",
            f"\trm -rf build/{f} && mkdir -p build/{f} dist",
            f"\tcd src && cp --parents $(patsubst src/%,%,$^) ../build/{f}/",
            f"\trm -f $@ && cd build/{f} && zip -q -X -r ../../$@ .",
            "",
        ]
    return "\n".join(out)


class Workspace:
    """One generated workspace of n functions (and its make twin, which
    shares src/ and requirements.txt)."""

    def __init__(self, n: int, wheels: Path, pins: list[str], cpus: int):
        self.n = n
        self.root = WORK / f"ws{n}"
        bench.rm(self.root)
        (self.root / "src").mkdir(parents=True)
        files = shared_files()
        for i in range(n):
            files.update(own_files(fn_name(i)))
        for rel, text in files.items():
            p = self.root / "src" / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        self.files = len(files)
        (self.root / "requirements.txt").write_text("\n".join(pins) + "\n")
        (self.root / "lambda.toml").write_text(lambda_toml(n, wheels))
        (self.root / "Makefile").write_text(makefile(n, wheels, sorted(shared_files()), cpus))
        # Every input an hour old: a no-op then trusts every fingerprint
        # (past the racy window) without sleeping.
        hour_ago = time.time() - 3600
        for rel in [*files, "../requirements.txt"]:
            os.utime(self.root / "src" / rel, (hour_ago, hour_ago))
        self.edits = 0

    def edit(self, rel: str) -> None:
        """Changes one module's content (EDIT = k), mtime now."""
        self.edits += 1
        p = self.root / "src" / rel
        text = p.read_text()
        head = text[: text.rindex("EDIT = ")]
        p.write_text(head + f"EDIT = {1000 + self.edits}\n")


# ------------------------------------------------------------------ running


def lbuild(exe: Path, ws: Workspace) -> tuple[bench.Run, dict]:
    r = bench.timed([str(exe), "--json"], ws.root, env=bench.deps_env())
    return r, json.loads(r.stdout)


def ran(report: dict, kind: str | None = None) -> list[str]:
    """Artifacts whose package stage ran."""
    out = []
    for a in report["artifacts"]:
        if "error" in a:
            raise SystemExit(f"artifact {a['name']} failed: {a['error']}")
        if kind and a["kind"] != kind:
            continue
        if any(s["name"] == "package" and s["status"] == "ran" for s in a["stages"]):
            out.append(a["name"])
    return out


def make(ws: Workspace, cpus: int) -> bench.Run:
    return bench.timed(["make", "-s", f"-j{cpus}"], ws.root)


def clear_lbuild(ws: Workspace, store: bool) -> None:
    bench.rm(ws.root / ".lbuild", ws.root / "dist")
    if store:
        bench.rm(STORE)


def clear_make(ws: Workspace) -> None:
    bench.rm(ws.root / "build", ws.root / "dist")


def measure(exe: Path, ws: Workspace, n_runs: int, measures: list[str], cpus: int,
            with_make: bool) -> dict:  # fmt: skip
    """Every measure for one workspace; lbuild and make alternate run by
    run so that load from other processes hits both alike."""
    walls: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    notes: dict[str, object] = {}

    def rec(key: str, r: bench.Run) -> None:
        walls.setdefault(key, []).append(r.wall)
        cpu.setdefault(key, []).append(r.cpu)

    fns = ws.n
    # The lbuild and make outputs share dist/: lbuild's outputs are
    # dist/fnNNN.zip and dist/layers/deps.zip too, so each tool's measures
    # run on its own copy of dist/ (moved aside while the other runs).
    lb_dist, mk_dist = ws.root / ".dist-lbuild", ws.root / ".dist-make"

    # Whose dist/ is in place: a workspace comes from lbuild's warm-up.
    owner = ["lbuild"]

    def as_tool(tool: str) -> None:
        """Puts that tool's dist/ in place (nothing to do when it is: the
        same tool twice in a row must not hand its dist/ to the other)."""
        if owner[0] == tool:
            return
        mine, other = (lb_dist, mk_dist) if tool == "lbuild" else (mk_dist, lb_dist)
        d = ws.root / "dist"
        bench.rm(other)
        if d.exists():
            d.rename(other)
        if mine.exists():
            mine.rename(d)
        owner[0] = tool

    def lb_cold(store: bool) -> None:
        as_tool("lbuild")
        clear_lbuild(ws, store)
        r, rep = lbuild(exe, ws)
        got = ran(rep)
        assert len(got) == fns + 1, f"cold: {len(got)} of {fns + 1} packaged"
        rec("cold" if store else "cold-store", r)

    def mk_cold() -> None:
        as_tool("make")
        clear_make(ws)
        rec("make cold", make(ws, cpus))

    for m in measures:
        log(f"N={ws.n}: {m}")
        for i in range(n_runs):
            order = ["lbuild", "make"] if i % 2 == 0 else ["make", "lbuild"]
            if not with_make:
                order = ["lbuild"]
            for tool in order:
                if m in ("cold", "cold-store"):
                    if tool == "lbuild":
                        lb_cold(store=(m == "cold"))
                    elif m == "cold":
                        mk_cold()
                    continue
                as_tool(tool)
                if tool == "lbuild" and not (ws.root / "dist").exists():
                    lbuild(exe, ws)  # set up (not timed)
                if tool == "make" and not (ws.root / "dist").exists():
                    make(ws, cpus)
                if m == "noop":
                    if tool == "lbuild":
                        r, rep = lbuild(exe, ws)
                        assert ran(rep) == [], f"no-op packaged {ran(rep)}"
                        rec("noop", r)
                    else:
                        r = make(ws, cpus)
                        rec("make noop", r)
                elif m in ("edit-one", "edit-shared"):
                    rel = f"{fn_name(0)}/{EDIT_ONE}" if m == "edit-one" else EDIT_SHARED
                    ws.edit(rel)
                    want = 1 if m == "edit-one" else fns
                    if tool == "lbuild":
                        r, rep = lbuild(exe, ws)
                        got = ran(rep, "function")
                        assert len(got) == want, f"{m}: {len(got)} packaged, want {want}"
                        rec(m, r)
                        notes.setdefault(f"{m} stages ms", []).append(stage_ms(rep))  # type: ignore[union-attr]
                    else:
                        rec(f"make {m}", make(ws, cpus))
                    # The other tool sees the same edit: undo nothing, its
                    # next run rebuilds the same artifacts (edits alternate).
    # A no-op after the edits re-hashes the edited files (racy window);
    # the measures above run noop before the edits for that reason.
    for d in (lb_dist, mk_dist):
        bench.rm(d)
    return {
        "files": ws.files,
        "runs": {k: [round(x, 4) for x in v] for k, v in walls.items()},
        "cpu": {k: [round(x, 4) for x in v] for k, v in cpu.items()},
        "median_s": {k: round(statistics.median(v), 4) for k, v in walls.items()},
        "cpu_median_s": {k: round(statistics.median(v), 4) for k, v in cpu.items()},
        "notes": notes,
    }


def stage_ms(report: dict) -> dict:
    """Sum of each stage's ms over the artifacts, and the build's ms."""
    out: dict[str, int] = {"total": report.get("ms", 0)}
    for a in report["artifacts"]:
        for s in a.get("stages", []):
            out[s["name"]] = out.get(s["name"], 0) + s.get("ms", 0)
    return out


def measure_watch(exe: Path, ws: Workspace, edits: int, pause_ms: int) -> dict:
    """Save -> new-zip latency of `lbuild watch --json` (one function's
    handler edited; the line for it arrives after the whole workspace was
    checked)."""
    log(f"N={ws.n}: lbuild watch, {edits} edits")
    clear_lbuild(ws, store=False)
    lbuild(exe, ws)
    target_name = fn_name(0)
    proc = subprocess.Popen([str(exe), "watch", "--json"], cwd=ws.root, env=bench.deps_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines: queue.Queue[dict] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(json.loads(x)) for x in proc.stdout], daemon=True).start()
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()

    def next_line() -> dict:
        try:
            v = lines.get(timeout=120)
        except queue.Empty:
            raise SystemExit("no line from lbuild watch within 120 s") from None
        if "error" in v:
            raise SystemExit(f"lbuild watch reported an error: {v['error']}")
        return v

    lat, build_ms = [], []
    try:
        sha = None
        seen = 0
        while seen < ws.n + 1:  # the initial build: one line per artifact
            v = next_line()
            seen += 1
            if v.get("name") == target_name:
                sha = v["sha256"]
        for _ in range(edits):
            time.sleep(pause_ms / 1000)
            t0 = time.perf_counter()
            ws.edit(f"{target_name}/{EDIT_ONE}")
            while True:
                v = next_line()
                if v.get("name") == target_name and v["sha256"] != sha:
                    break
            lat.append((time.perf_counter() - t0) * 1000)
            build_ms.append(v["ms"])
            sha = v["sha256"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    lat.sort()
    return {
        "functions": ws.n,
        "edits": len(lat),
        "p50_ms": round(statistics.median(lat), 1),
        "p95_ms": round(lat[max(0, -(-95 * len(lat) // 100) - 1)], 1),
        "min_ms": round(lat[0], 1),
        "max_ms": round(lat[-1], 1),
        "artifact_build_median_ms": statistics.median(build_ms),
    }


SAM_TEMPLATE_HEAD = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Architectures: [x86_64]
Resources:
  Deps:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer/
      CompatibleRuntimes: [python3.12]
    Metadata:
      BuildMethod: python3.12
"""


def measure_sam(ws: Workspace, n_runs: int) -> dict:
    """`sam build --cached --parallel` over the same functions: each
    function's CodeUri is a copy of its files and the shared ones (SAM
    builds one directory per function)."""
    sam = shutil.which("sam")
    if not sam:
        return {"skipped": "sam (aws-sam-cli) not on PATH; `pip install aws-sam-cli` and a python3.12 to run it"}
    # sam builds with the Python on PATH and wants the runtime to match it:
    # python3.12 (the workspace's runtime) when there is one, else the
    # Python running this script (reported, so the figure is not misread).
    # (A pyenv shim named python3.12 may exist and fail: run it to know.)
    py312 = shutil.which("python3.12")
    works = py312 and subprocess.run([py312, "-c", ""], capture_output=True).returncode == 0
    runtime = "python3.12" if works else f"python3.{sys.version_info.minor}"
    root = WORK / f"sam{ws.n}"
    bench.rm(root)
    (root / "layer").mkdir(parents=True)
    shutil.copy(ws.root / "requirements.txt", root / "layer" / "requirements.txt")
    text = [SAM_TEMPLATE_HEAD.replace("python3.12", runtime)]
    for i in range(ws.n):
        f = fn_name(i)
        code = root / "functions" / f
        shutil.copytree(ws.root / "src" / f, code / f)
        shutil.copytree(ws.root / "src" / "shared", code / "shared")
        text += [
            f"  {f.capitalize()}:",
            "    Type: AWS::Serverless::Function",
            "    Properties:",
            f"      CodeUri: functions/{f}/",
            f"      Handler: {f}.app.handler",
            "      Layers: [!Ref Deps]",
        ]
    (root / "template.yaml").write_text("\n".join(text) + "\n")
    cmd = [sam, "build", "--cached", "--parallel"]
    out: dict = {"functions": ws.n, "runtime": runtime}
    try:
        r = bench.timed(cmd, root)
        out["cold_s"] = round(r.wall, 3)
        runs = [bench.timed(cmd, root).wall for _ in range(n_runs)]
        out["noop_s"] = round(statistics.median(runs), 3)
        p = root / "functions" / fn_name(0) / fn_name(0) / EDIT_ONE
        edits = []
        for k in range(n_runs):
            p.write_text(handler_text(fn_name(0), 2000 + k))
            edits.append(bench.timed(cmd, root).wall)
        out["edit_one_s"] = round(statistics.median(edits), 3)
    except SystemExit as e:  # timed() raises SystemExit with the output
        out["failed"] = str(e)[-2000:]
    return out


# ------------------------------------------------------------------ report


def fmt(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1000:.0f} ms" if s < 10 else f"{s:.1f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small layer (~1 MB), 3 runs, 8 watch edits")  # fmt: skip
    ap.add_argument("-n", type=int, default=None, help="runs per measure (default 5; --quick 3)")
    ap.add_argument("--sizes", default="5,20,40,80", help="numbers of functions (N=1 is added)")
    ap.add_argument("--measures", default=",".join(MEASURES), help=f"subset of {','.join(MEASURES)}")
    ap.add_argument("--no-make", action="store_true", help="lbuild only")
    ap.add_argument("--watch-edits", type=int, default=None, help="0 skips watch (default 15; --quick 8)")
    ap.add_argument("--sam", action="store_true", help="also sam build --cached --parallel at 40")
    ap.add_argument("--lbuild", type=Path, help="use this binary instead of building one")
    ap.add_argument("--keep", action="store_true", help="keep benches/.work/scale afterwards")
    ap.add_argument("--out", type=Path, default=bench.RESULTS / "workspace_scale.json")
    args = ap.parse_args()
    n_runs = args.n or (3 if args.quick else 5)
    sizes = sorted({1, *(int(x) for x in args.sizes.split(",") if x)})
    measures = [m for m in args.measures.split(",") if m]
    for m in measures:
        if m not in MEASURES:
            raise SystemExit(f"unknown measure {m!r}: one of {', '.join(MEASURES)}")
    measures = [m for m in MEASURES if m in measures]  # noop before the edits
    watch_edits = args.watch_edits if args.watch_edits is not None else (8 if args.quick else 15)
    cpus = os.cpu_count() or 1
    for tool in ("make", "zip", "uv"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found on PATH")

    exe = args.lbuild.resolve() if args.lbuild else bench.build_lbuild()
    wheels = bench.wheelhouse_dir()
    pins = QUICK_PINS if args.quick else bench.PINS
    bench.rm(WORK)
    WORK.mkdir(parents=True)
    load_before = bench.loadavg()
    t0 = time.time()

    # Warm the installer's cache once, so no cold run pays for it alone.
    log("warm-up: one cold build of N=1 (installer cache)")
    warm = Workspace(1, wheels, pins, cpus)
    lbuild(exe, warm)
    with zipfile.ZipFile(warm.root / "dist" / "layers" / "deps.zip") as z:
        layer_bytes = sum(i.file_size for i in z.infolist())
        layer_files = len(z.infolist())

    results: dict[int, dict] = {}
    big = max(sizes)
    kept: Workspace | None = None
    for n in sizes:
        ws = warm if n == 1 else Workspace(n, wheels, pins, cpus)
        clear_lbuild(ws, store=False)
        results[n] = measure(exe, ws, n_runs, measures, cpus, with_make=not args.no_make)
        if n == big:
            kept = ws
        elif not args.keep:
            bench.rm(ws.root)
    watch = None
    if watch_edits and kept is not None:
        watch = measure_watch(exe, kept, watch_edits, pause_ms=300)
    sam = None
    if args.sam:
        sam = measure_sam(Workspace(40, wheels, pins, cpus), max(2, n_runs // 2))
    load_after = bench.loadavg()

    # ---- table
    cols = [("cold", "cold"), ("cold-store", "cold, warm store"), ("noop", "no-op"),
            ("edit-one", "edit one"), ("edit-shared", "edit shared"),
            ("make cold", "make cold"), ("make noop", "make no-op"),
            ("make edit-one", "make edit one"), ("make edit-shared", "make edit shared")]  # fmt: skip
    cols = [(k, h) for k, h in cols if any(k in r["median_s"] for r in results.values())]
    head = ["N", "files"] + [h for _, h in cols]
    rows = [[str(n), str(r["files"])] + [fmt(r["median_s"].get(k)) for k, _ in cols] for n, r in results.items()]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    print(f"\nworkspace scale: layer {layer_files} files, {layer_bytes / 1e6:.1f} MB unzipped ({len(pins)} pins), "
          f"{cpus} CPUs, median of {n_runs}, load {load_before} -> {load_after}")  # fmt: skip
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    # CPU (user + sys of the process and its children): steadier than wall
    # time on a loaded machine.
    print("CPU time (user + sys), same runs:")
    rows = [[str(n), str(r["files"])] + [fmt(r["cpu_median_s"].get(k)) for k, _ in cols] for n, r in results.items()]
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))

    def ratio(a: tuple[int, str], b: tuple[int, str]) -> float | None:
        ra, rb = results.get(a[0]), results.get(b[0])
        if not ra or not rb or a[1] not in ra["median_s"] or b[1] not in rb["median_s"]:
            return None
        return ra["median_s"][a[1]] / rb["median_s"][b[1]]

    targets = {
        f"noop({big}) / make noop({big})": (ratio((big, "noop"), (big, "make noop")), TARGET_NOOP_VS_MAKE),
        "edit-one(40) / edit-one(1)": (ratio((40, "edit-one"), (1, "edit-one")), TARGET_EDIT_VS_ONE),
        "cold-store(40) / cold-store(1)": (ratio((40, "cold-store"), (1, "cold-store")), TARGET_COLD_STORE_VS_ONE),
    }  # fmt: skip
    small = min(n for n in sizes if n > 1) if len(sizes) > 1 else 1
    growth = {
        "noop": ratio((big, "noop"), (small, "noop")),
        "make noop": ratio((big, "make noop"), (small, "make noop")),
        "files": results[big]["files"] / results[small]["files"],
    }
    print()
    for k, (v, limit) in targets.items():
        if v is not None:
            print(f"{k:<34} {v:6.2f}x  (target <= {limit}x)  {'PASS' if v <= limit else 'MISS'}")
    if watch:
        ok = watch["p50_ms"] <= TARGET_WATCH_P50_MS
        print(f"{'watch save -> new zip, N=' + str(watch['functions']):<34} p50 {watch['p50_ms']} ms, "
              f"p95 {watch['p95_ms']} ms  (target p50 <= {TARGET_WATCH_P50_MS:.0f} ms)  "
              f"{'PASS' if ok else 'MISS'}")  # fmt: skip
    if growth["noop"] is not None:
        mk = f"{growth['make noop']:.1f}x" if growth["make noop"] is not None else "-"
        print(f"no-op growth N={small} -> {big}: lbuild {growth['noop']:.1f}x, "
              f"make {mk}, files {growth['files']:.1f}x")  # fmt: skip
    if sam:
        print(f"sam build --cached --parallel: {sam}")

    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
        "duration_s": round(time.time() - t0, 1),
        "machine": {"cpus": cpus, "platform": platform.platform(),
                    "load_before": load_before, "load_after": load_after},
        "lbuild": {"binary": str(exe), "git": bench.sh(["git", "rev-parse", "HEAD"], bench.REPO).strip()},
        "quick": args.quick,
        "layer": {"pins": pins, "files": layer_files, "unzipped_bytes": layer_bytes},
        "files_per_function": OWN_FILES, "shared_files": SHARED_FILES,
        "runs_per_measure": n_runs,
        "sizes": {str(n): r for n, r in results.items()},
        "targets": {k: {"value": v, "max": lim} for k, (v, lim) in targets.items()},
        "growth": growth,
        "watch": watch,
        "sam": sam,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    if not args.keep:
        bench.rm(WORK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
