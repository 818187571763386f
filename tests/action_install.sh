#!/usr/bin/env bash
# Runs action.yml's own steps (install, cache key, build) the way a runner
# would, against a release archive made here from a locally built lbuild:
#
#   tests/action_install.sh                 # packs target/debug/lbuild (cargo build --locked)
#   LBUILD_BIN=path/to/lbuild tests/action_install.sh
#
# It proves: the install step verifies the checksum (a damaged archive and a
# wrong pinned sha256 fail, and install nothing), installs and puts lbuild
# on PATH; a missing version is refused; the cache key follows the
# requirements; the build step's outputs name the zip and its CodeSha256.
# Needs python3 with PyYAML (installed with moto[server], as the e2e tests
# use). Not part of `cargo test`: it runs a runner's shell steps.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

if [ -z "${LBUILD_BIN:-}" ]; then
    cargo build --locked --quiet
    LBUILD_BIN="$repo/target/debug/lbuild"
fi
version=$(cargo metadata --locked --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "lbuild"))')

tmp="$(mktemp -d /tmp/lbuild-action-test.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
case "$(uname -m)" in aarch64 | arm64) arch=aarch64 ;; *) arch=x86_64 ;; esac
case "$(uname -s)" in Darwin) target="$arch-apple-darwin" ;; *) target="$arch-unknown-linux-musl" ;; esac
python3 scripts/make_archive.py "$LBUILD_BIN" "$target" "$tmp/release" >/dev/null
good_sha=$(cut -d' ' -f1 "$tmp/release/lbuild-$target.tar.gz.sha256")

failures=0
pass() { printf 'ok   %s\n' "$1"; }
fail() { printf 'FAIL %s\n' "$1"; failures=$((failures + 1)); }

# run_step STEP_ID RUNNER_DIR [input=value ...] [github.x=value ...]
# Runs that step of action.yml with its `${{ }}` expressions replaced by
# the values given (inputs default to action.yml's defaults) and the
# runner's files (GITHUB_OUTPUT, GITHUB_PATH, GITHUB_ENV) under RUNNER_DIR,
# in the current directory (the workspace).
# Prints the step's output; returns its exit status.
run_step() {
    local id="$1" runner="$2"
    shift 2
    mkdir -p "$runner/temp" "$runner/home"
    : >"$runner/output"
    python3 - "$repo/action.yml" "$id" "$runner" "$@" <<'EOF' >"$runner/step.sh"
import re, shlex, sys, yaml
action, step_id, runner, *pairs = sys.argv[1:]
doc = yaml.safe_load(open(action))
step = next(s for s in doc["runs"]["steps"] if s.get("id") == step_id)
values = {f"inputs.{k}": v.get("default", "") for k, v in doc["inputs"].items()}
values.update({"github.action_path": sys.argv[1].rsplit("/", 1)[0],
               "github.action_repository": "example/lbuild", "github.action_ref": "",
               "runner.temp": f"{runner}/temp"})
for pair in pairs:
    key, _, value = pair.partition("=")
    values[key if "." in key else f"inputs.{key}"] = value
if step_id == "build":
    values["steps.install.outputs.bin"] = f"{runner}/temp/lbuild-bin/lbuild"
def expand(text):
    return re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}", lambda m: values[m.group(1)], text)
for name, value in step.get("env", {}).items():
    print(f"export {name}={shlex.quote(expand(str(value)))}")
print(expand(step["run"]))
EOF
    (
        export HOME="$runner/home" RUNNER_TEMP="$runner/temp" RUNNER_OS=Linux RUNNER_ARCH=X64
        export GITHUB_OUTPUT="$runner/output" GITHUB_PATH="$runner/path" GITHUB_ENV="$runner/env"
        bash -e "$runner/step.sh"
    ) 2>&1
}

# 1. Install from the local release, checksum from its .sha256 file.
r="$tmp/r1"
if out=$(run_step install "$r" version="$version" download-url="file://$tmp/release") &&
    [ -x "$r/temp/lbuild-bin/lbuild" ] &&
    "$r/temp/lbuild-bin/lbuild" --version | grep -q "^lbuild $version (" &&
    grep -qx "$r/temp/lbuild-bin" "$r/path" &&
    grep -qx "bin=$r/temp/lbuild-bin/lbuild" "$r/output" &&
    grep -q "^LBUILD_STORE=" "$r/env"; then
    pass "install: verified, installed, on PATH ($("$r/temp/lbuild-bin/lbuild" --version))"
else
    fail "install from a good archive"; echo "$out"
fi

# 2. A pinned sha256 that matches, given as a plain directory path.
r="$tmp/r2"
if run_step install "$r" version="$version" download-url="$tmp/release" sha256="$good_sha" >/dev/null &&
    [ -x "$r/temp/lbuild-bin/lbuild" ]; then
    pass "install: pinned sha256 matches"
else
    fail "install with the right pinned sha256"
fi

# 3. A damaged archive (one byte appended) against its .sha256: refused.
mkdir -p "$tmp/damaged"
cp "$tmp/release/lbuild-$target.tar.gz.sha256" "$tmp/damaged/"
{ cat "$tmp/release/lbuild-$target.tar.gz"; printf 'x'; } >"$tmp/damaged/lbuild-$target.tar.gz"
r="$tmp/r3"
if out=$(run_step install "$r" version="$version" download-url="file://$tmp/damaged"); then
    fail "install of a damaged archive succeeded"
elif [ -e "$r/temp/lbuild-bin/lbuild" ] || [ -s "$r/path" ]; then
    fail "a damaged archive left something installed"
elif ! grep -q "checksum mismatch for lbuild-$target.tar.gz" <<<"$out"; then
    fail "damaged archive: no checksum message"; echo "$out"
else
    pass "install: damaged archive refused, nothing installed"
fi

# 4. A good archive against a wrong pinned sha256: refused.
r="$tmp/r4"
wrong=$(printf '%064d' 0)
if out=$(run_step install "$r" version="$version" download-url="$tmp/release" sha256="$wrong"); then
    fail "install with a wrong pinned sha256 succeeded"
elif [ -e "$r/temp/lbuild-bin/lbuild" ] || ! grep -q "expected $wrong" <<<"$out"; then
    fail "wrong pinned sha256: installed, or no message"; echo "$out"
else
    pass "install: wrong pinned sha256 refused"
fi

# 5. No version and the action used at a branch: an error asking for one.
r="$tmp/r5"
if out=$(run_step install "$r" github.action_ref=main download-url="$tmp/release"); then
    fail "install without a version succeeded"
elif ! grep -q "set the version input" <<<"$out"; then
    fail "no version: no message"; echo "$out"
else
    pass "install: no version at a branch ref is refused"
fi

# 6. The cache key: the same files give the same key; a changed pin a new one.
proj="$tmp/proj"
cp -r examples/hello "$proj"
rm -rf "$proj/dist" "$proj/.lbuild"
printf 'requests==2.32.3\n' >"$proj/requirements.txt"
key() { run_step key "$1" >/dev/null && grep '^key=' "$1/output" | cut -d= -f2-; }
k1=$(cd "$proj" && key "$tmp/k1")
k2=$(cd "$proj" && key "$tmp/k2")
printf 'requests==2.32.4\n' >"$proj/requirements.txt"
k3=$(cd "$proj" && key "$tmp/k3")
if [ -n "$k1" ] && [ "$k1" = "$k2" ] && [ "$k1" != "$k3" ]; then
    pass "cache key: stable, changes with requirements.txt"
else
    fail "cache key: $k1 / $k2 / $k3"
fi
rm "$proj/requirements.txt"

# 7. The build step with the binary step 1 installed: outputs the zip and
# a CodeSha256 that is base64(SHA-256) of that zip's bytes.
r="$tmp/r1"
if out=$(cd "$proj" && LBUILD_STORE="$tmp/store" run_step build "$r" manifest="$proj/lambda.toml"); then
    zip=$(grep '^zip=' "$r/output" | cut -d= -f2-)
    code=$(grep '^code-sha256=' "$r/output" | cut -d= -f2-)
    want=$(python3 -c 'import base64,hashlib,sys; print(base64.b64encode(hashlib.sha256(open(sys.argv[1],"rb").read()).digest()).decode())' "$zip")
    if [ "$zip" = "$proj/dist/hello.zip" ] && [ "$code" = "$want" ] &&
        grep -q "^artifacts={\"hello\": {\"code_sha256\": \"$code\"" "$r/output"; then
        pass "build: outputs zip $zip and CodeSha256 $code"
    else
        fail "build outputs: zip=$zip code=$code want=$want"; cat "$r/output"
    fi
else
    fail "build step failed"; echo "$out"
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all action checks passed"
