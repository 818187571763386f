#!/usr/bin/env python3
"""Machine store and remote store benchmark, on bench.py's corpus (its
wheels installed by lbuild's deps stage from a local wheelhouse).

  (1) a fresh clone with an empty machine store and a warm remote store
      (moto's S3 on loopback, read-only; its objects signed by the writer's
      key, the clone trusting only the public key) vs a truly cold build
      (empty store, no remote): >= 5x faster; the same clone reading with
      trust = "bucket" and no trusted key (signatures not checked) says
      what verifying costs;
  (2) a second project with the same requirements on the same machine
      (warm machine store) vs its own cold build: >= 5x faster;
  (3) no-op with a remote store configured vs without: no slower (<= 1.1x;
      the no-op never calls the bucket).

Wall and CPU (user+sys of lbuild and its children) seconds, medians of -n
runs. Needs moto's server (`pip install "moto[server]"`) and boto3.

Usage: python3 benches/store.py [-n N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

WORK = bench.WORK / "store-bench"
BUCKET = "lbuild-bench"
REMOTE = f"s3://{BUCKET}/fleet"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    p = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise SystemExit(f"moto did not start (see {log})")


# The writer's key pair, made by `lbuild cache keygen` at the start.
KEYS: dict[str, str] = {}


def env_for(store: Path, endpoint: str | None, role: str = "reader") -> dict[str, str]:
    env = bench.deps_env()
    env["LBUILD_STORE"] = str(store)
    env.pop("CI", None)
    env.pop("LBUILD_REMOTE_CACHE", None)
    for var in ("LBUILD_SIGNING_KEY", "LBUILD_TRUSTED_KEYS", "LBUILD_REMOTE_TRUST"):
        env.pop(var, None)
    if role == "writer":
        env["LBUILD_SIGNING_KEY"] = KEYS["secret"]
    elif role == "reader":
        env["LBUILD_TRUSTED_KEYS"] = KEYS["public"]
    elif role == "bucket":
        env["LBUILD_REMOTE_TRUST"] = "bucket"
    if endpoint:
        env.update(
            AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
            AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
        )  # fmt: skip
    return env


def project(root: Path, wheels: Path, edit: int = 0) -> None:
    bench.rm(root)
    root.mkdir(parents=True)
    (root / "lambda.toml").write_text(bench.DEPS_TOML.format(wheels=wheels))
    (root / "requirements.txt").write_text("\n".join(bench.PINS) + "\n")
    (root / "app.py").write_text(bench.HANDLER.format(edit=edit))


def build(root: Path, env: dict[str, str], *extra: str) -> tuple[bench.Run, dict]:
    r = bench.timed([str(EXE), "--json", *extra], root, env=env)
    return r, json.loads(r.stdout)


def stage(report: dict, name: str) -> dict:
    return bench.stage(report, name)["details"]


def main() -> int:
    global EXE
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--lbuild", type=Path)
    args = ap.parse_args()
    EXE = args.lbuild.resolve() if args.lbuild else bench.build_lbuild()
    wheels = bench.wheelhouse_dir()
    bench.rm(WORK)
    WORK.mkdir(parents=True)
    moto, endpoint = start_moto(WORK / "moto.log")
    rows: dict[str, list[bench.Run]] = {k: [] for k in (
        "cold", "remote-warm clone", "clone, unverified", "second project", "no-op",
        "no-op with remote")}  # fmt: skip
    keygen = subprocess.run([str(EXE), "cache", "keygen", "bench", "--out", str(WORK / "bench.secret")],
                            check=True, capture_output=True, text=True)  # fmt: skip
    KEYS["public"] = keygen.stdout.strip()
    KEYS["secret"] = str(WORK / "bench.secret")
    sha = None
    try:
        import boto3  # moto ships it

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")  # fmt: skip
        s3.create_bucket(Bucket=BUCKET)
        # Warm the bucket once: a CI build in read-write mode.
        a, store_a = WORK / "a", WORK / "store-a"
        project(a, wheels)
        r, rep = build(a, env_for(store_a, endpoint, "writer"), "--remote-cache", REMOTE,
                       "--remote-cache-mode", "read-write")  # fmt: skip
        sha = rep["sha256"]
        bench.log(f"warmed the bucket in {r.wall:.2f} s: {stage(rep, 'package')}")

        for i in range(args.n):
            # (1) truly cold vs a fresh clone with a warm remote.
            cold, store_c = WORK / "cold", WORK / f"store-cold-{i}"
            project(cold, wheels)
            r, rep = build(cold, env_for(store_c, None))
            assert rep["sha256"] == sha
            rows["cold"].append(r)
            clone, store_b = WORK / "clone", WORK / f"store-clone-{i}"
            project(clone, wheels)
            r, rep = build(clone, env_for(store_b, endpoint), "--remote-cache", REMOTE)
            assert rep["sha256"] == sha, "the remote build differs"
            assert stage(rep, "deps").get("from") == "remote", rep
            # Large entries copied; files under 64 KiB are deflated again.
            assert stage(rep, "package")["from_tree"] > 0, rep
            rows["remote-warm clone"].append(r)
            # The same, with no signature checked (trust = "bucket").
            bench.rm(store_b)
            project(clone, wheels)
            r, rep = build(clone, env_for(store_b, endpoint, "bucket"), "--remote-cache", REMOTE)
            assert rep["sha256"] == sha and stage(rep, "deps").get("from") == "remote", rep
            rows["clone, unverified"].append(r)
            # (2) a second project on the machine whose store holds the corpus
            # (the cold build's store): another handler, same requirements.
            second = WORK / "second"
            project(second, wheels, edit=1000 + i)
            r, rep = build(second, env_for(store_c, None))
            assert stage(rep, "deps").get("from") == "store", rep
            rows["second project"].append(r)
            # (3) no-op, without and with a remote configured.
            rows["no-op"].append(build(second, env_for(store_c, None))[0])
            r, rep = build(second, env_for(store_c, endpoint), "--remote-cache", REMOTE)
            assert bench.stage(rep, "package")["status"] == "cached"
            rows["no-op with remote"].append(r)
            bench.rm(store_b)
            if i + 1 < args.n:
                bench.rm(store_c)
    finally:
        moto.kill()
        moto.wait()

    med = {k: (bench.med([r.wall for r in v]), bench.med([r.cpu for r in v])) for k, v in rows.items()}
    print(f"{'measure':<22} {'wall s':>8} {'cpu s':>8}")
    for k, (w, c) in med.items():
        print(f"{k:<22} {w:>8.3f} {c:>8.3f}")
    targets = [
        ("cold / remote-warm clone", med["cold"][0] / med["remote-warm clone"][0], ">=", 5.0),
        ("signed / unverified clone", med["remote-warm clone"][0] / med["clone, unverified"][0], "<=", 1.1),
        ("cold / second project", med["cold"][0] / med["second project"][0], ">=", 5.0),
        ("no-op with remote / no-op", med["no-op with remote"][0] / med["no-op"][0], "<=", 1.1),
    ]
    print()
    for name, ratio, op, limit in targets:
        ok = ratio >= limit if op == ">=" else ratio <= limit
        print(f"{name:<28} {ratio:>7.2f} {op} {limit:<4} {'PASS' if ok else 'MISS'}")
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    (bench.RESULTS / "store.json").write_text(json.dumps({
        "medians": {k: {"wall": w, "cpu": c} for k, (w, c) in med.items()},
        "ratios": {n: r for n, r, _, _ in targets},
        "loadavg": bench.loadavg(),
    }, indent=2) + "\n")  # fmt: skip
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
