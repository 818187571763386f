#!/usr/bin/env python3
"""Packs an lbuild binary as a release archive: OUTDIR/lbuild-TARGET.tar.gz
holding lbuild-TARGET/lbuild and README.md, and lbuild-TARGET.tar.gz.sha256
beside it (sha256sum's format).

    scripts/make_archive.py SOURCE TARGET OUTDIR

SOURCE is a wheel (its lbuild-VERSION.data/scripts/lbuild is taken) or the
binary itself. Names are sorted and owner, mode and time fixed, so the
archive's bytes depend on the binary alone. Python's tarfile rather than
tar: GNU and BSD tar take different flags. scripts/dist and
tests/action_install.sh use it.
"""
import gzip
import hashlib
import io
import os
import sys
import tarfile
import zipfile


def main() -> None:
    source, target, outdir = sys.argv[1:]
    if source.endswith(".whl"):
        with zipfile.ZipFile(source) as z:
            name = next(n for n in z.namelist() if n.endswith(".data/scripts/lbuild"))
            binary = z.read(name)
    else:
        with open(source, "rb") as f:
            binary = f.read()
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
    with open(readme, "rb") as f:
        readme_bytes = f.read()
    top = f"lbuild-{target}"
    files = [(f"{top}/README.md", readme_bytes, 0o644), (f"{top}/lbuild", binary, 0o755)]
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(top)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
            for path, data, mode in sorted(files):
                info = tarfile.TarInfo(path)
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
    os.makedirs(outdir, exist_ok=True)
    archive = f"{top}.tar.gz"
    with open(os.path.join(outdir, archive), "wb") as f:
        f.write(buf.getvalue())
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    with open(os.path.join(outdir, archive + ".sha256"), "w") as f:
        f.write(f"{digest}  {archive}\n")
    print(os.path.join(outdir, archive))


if __name__ == "__main__":
    main()
