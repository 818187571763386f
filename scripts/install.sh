#!/bin/sh
# Installs the lbuild binary from a release archive, after checking its
# SHA-256:
#
#   curl -LsSf https://github.com/OWNER/lbuild/releases/latest/download/install.sh | sh
#
# Settings (environment):
#   LBUILD_VERSION       a release such as 0.2.0 or v0.2.0 [default: latest]
#   LBUILD_INSTALL_DIR   where the binary goes [default: ~/.local/bin]
#   LBUILD_SHA256        the archive's expected SHA-256; when set, the archive
#                        must match it (pin it in CI), else the release's
#                        lbuild-TARGET.tar.gz.sha256 file is the reference
#   LBUILD_TARGET        the archive to take [default: this machine's: the
#                        static musl build on Linux]
#   LBUILD_DOWNLOAD_URL  where the archives are, instead of the GitHub
#                        release: https://..., file:///dir or a directory
#   LBUILD_REPO          the GitHub repository (owner/name) of the release
#
# Nothing is installed unless the checksum matches; the binary is put in
# place under a temporary name and renamed, so an interrupted install leaves
# the previous one working.
set -eu

say() { printf 'lbuild install: %s\n' "$*" >&2; }
fail() { say "error: $*"; exit 1; }

repo="${LBUILD_REPO:-__LBUILD_REPO__}"
version="${LBUILD_VERSION:-latest}"
install_dir="${LBUILD_INSTALL_DIR:-$HOME/.local/bin}"

if [ -n "${LBUILD_TARGET:-}" ]; then
    target="$LBUILD_TARGET"
else
    case "$(uname -s)" in
        Linux) os=unknown-linux-musl ;;
        Darwin) os=apple-darwin ;;
        *) fail "no lbuild archive for $(uname -s); try: pip install lbuild, or cargo install --locked lbuild" ;;
    esac
    case "$(uname -m)" in
        x86_64 | amd64) arch=x86_64 ;;
        aarch64 | arm64) arch=aarch64 ;;
        *) fail "no lbuild archive for $(uname -m); try: pip install lbuild, or cargo install --locked lbuild" ;;
    esac
    target="$arch-$os"
fi
archive="lbuild-$target.tar.gz"

if [ -n "${LBUILD_DOWNLOAD_URL:-}" ]; then
    base="${LBUILD_DOWNLOAD_URL%/}"
else
    case "$repo" in
        */*) ;;
        *) fail "no release repository known: set LBUILD_REPO=OWNER/NAME or LBUILD_DOWNLOAD_URL" ;;
    esac
    case "$version" in
        latest) base="https://github.com/$repo/releases/latest/download" ;;
        v*) base="https://github.com/$repo/releases/download/$version" ;;
        *) base="https://github.com/$repo/releases/download/v$version" ;;
    esac
fi

# fetch URL FILE: https:// and file:// through curl or wget; a bare path is
# a local directory.
fetch() {
    case "$1" in
        *://*)
            if command -v curl >/dev/null 2>&1; then
                curl --proto '=https,file' --tlsv1.2 -fsSL "$1" -o "$2" || fail "could not download $1"
            elif command -v wget >/dev/null 2>&1; then
                case "$1" in file://*) cp "${1#file://}" "$2" || fail "could not read $1" ;;
                    *) wget -q "$1" -O "$2" || fail "could not download $1" ;;
                esac
            else
                fail "curl or wget is needed to download $1"
            fi
            ;;
        *) cp "$1" "$2" 2>/dev/null || fail "could not read $1" ;;
    esac
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d' ' -f1
    else
        fail "sha256sum or shasum is needed to check the download"
    fi
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT INT TERM

say "downloading $base/$archive"
fetch "$base/$archive" "$tmp/$archive"
if [ -n "${LBUILD_SHA256:-}" ]; then
    expected="$LBUILD_SHA256"
else
    fetch "$base/$archive.sha256" "$tmp/$archive.sha256"
    expected="$(cut -d' ' -f1 <"$tmp/$archive.sha256")"
fi
expected="$(printf '%s' "$expected" | tr 'A-F' 'a-f')"
# Checked before it is printed: it may come from a downloaded file.
case "$expected" in
    *[!0-9a-f]*) fail "the expected checksum for $archive is not a hex SHA-256 (LBUILD_SHA256 or $archive.sha256)" ;;
esac
[ ${#expected} -eq 64 ] || fail "the expected checksum for $archive is not a hex SHA-256 (LBUILD_SHA256 or $archive.sha256)"
actual="$(sha256_of "$tmp/$archive")"
if [ "$actual" != "$expected" ]; then
    fail "checksum mismatch for $archive: expected $expected, got $actual; nothing was installed (a damaged or tampered download, or a wrong LBUILD_SHA256)"
fi

mkdir -p "$tmp/x"
tar -xzf "$tmp/$archive" -C "$tmp/x" || fail "could not unpack $archive"
binary="$tmp/x/lbuild-$target/lbuild"
[ -f "$binary" ] || fail "$archive holds no lbuild-$target/lbuild"

mkdir -p "$install_dir" || fail "cannot create $install_dir"
cp "$binary" "$install_dir/.lbuild.tmp.$$" || fail "cannot write to $install_dir"
chmod 755 "$install_dir/.lbuild.tmp.$$"
mv -f "$install_dir/.lbuild.tmp.$$" "$install_dir/lbuild"
say "installed $("$install_dir/lbuild" --version 2>/dev/null || echo lbuild) to $install_dir/lbuild"
case ":$PATH:" in
    *":$install_dir:"*) ;;
    *) say "add $install_dir to PATH to run it as lbuild" ;;
esac
