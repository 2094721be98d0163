"""Storage: the one owner of "local path or URI" and of the run directory's filesystem.

Every path in axiom-ray is a local path or a pyarrow filesystem URI (file://, s3://, gs://,
hdfs://, ...); the functions here decide which, and every other module asks them. `Storage` is
the run directory on such a filesystem: phases write under a temporary name and are published
with one rename (or copy, where the filesystem has no rename), so a reader never sees half a
phase. Pure: pyarrow only (no Ray, torch or vLLM).

Object stores (s3://, gs://) take their credentials and endpoint the standard way, from the
environment of the process that opens the URI (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or an
instance profile, AWS_ENDPOINT_URL for an S3-compatible server: pyarrow reads them itself), never
from flags or the config, so they reach no manifest or log. Every node that runs a phase opens
the run directory, so every node needs them.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

FILE_SCHEME = "file://"
# Filesystems (pyarrow type names) whose "directories" are key prefixes: no rename of a directory.
NO_DIRECTORY_RENAME = frozenset({"s3", "gcs"})


def is_uri(path: str) -> bool:
    """Whether `path` names its filesystem by a scheme (file://, s3://, ...), not a plain path."""
    return "://" in path


def is_local(path_or_uri: str) -> bool:
    """A plain path or a file:// URI: this machine's disk (any other scheme is resolved by
    pyarrow alike on every node)."""
    scheme, sep, _ = path_or_uri.partition("://")
    return not sep or scheme.lower() == "file"


def local_path(path_or_uri: str) -> str:
    """The absolute, symlink-resolved local path of a plain path or a file:// URI."""
    if path_or_uri.lower().startswith(FILE_SCHEME):
        path_or_uri = path_or_uri[len(FILE_SCHEME):]
    return os.path.realpath(os.path.expanduser(path_or_uri))


def normalize_uri(uri: str) -> str:
    """Local paths become absolute (a Ray job's working directory is a temporary copy, so a
    relative path would put the run somewhere the user never looks); URIs pass through."""
    if is_uri(uri):
        return uri.rstrip("/")
    return str(Path(os.path.expanduser(uri)).resolve())


def resolve(root: str, path: str) -> str:
    """`path` as a manifest records it: relative to `root`, or absolute / a URI as given."""
    return path if is_uri(path) or os.path.isabs(path) else f"{root}/{path}"


def filesystem(path_or_uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path or any pyarrow URI."""
    if is_uri(path_or_uri):
        return pafs.FileSystem.from_uri(path_or_uri)
    return pafs.LocalFileSystem(), os.path.abspath(path_or_uri)


def local_folder(path_or_uri: str, into: str) -> str:
    """A folder on this machine with the contents of the folder at `path_or_uri`: the folder
    itself when it is a plain path, else a copy of the URI's folder (file:// included) downloaded
    into a fresh folder under `into`. FileNotFoundError when
    there is no folder there."""
    if not is_uri(path_or_uri):
        if not os.path.isdir(path_or_uri):
            raise FileNotFoundError(f"{path_or_uri!r}: no such folder")
        return path_or_uri
    source_fs, source_path = filesystem(path_or_uri)
    if source_fs.get_file_info(source_path).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{path_or_uri!r}: no such folder")
    local = tempfile.mkdtemp(prefix="download-", dir=into)
    pafs.copy_files(source_path, local, source_filesystem=source_fs, destination_filesystem=pafs.LocalFileSystem())
    return local


class Storage:
    """Paths relative to a root URI, and the few operations the loop needs."""

    def __init__(self, root: str) -> None:
        self.root = normalize_uri(root)
        self.fs, self.base = filesystem(self.root)

    def uri(self, *parts: str) -> str:
        """A URI (or absolute local path) for Ray Data, Ray Train and pyarrow readers."""
        return "/".join([self.root, *parts]) if parts else self.root

    def _p(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self._p(rel)).type != pafs.FileType.NotFound

    def is_dir(self, rel: str) -> bool:
        return self.fs.get_file_info(self._p(rel)).type == pafs.FileType.Directory

    def makedirs(self, rel: str) -> None:
        self.fs.create_dir(self._p(rel), recursive=True)

    def read_json(self, rel: str) -> Any:
        with self.fs.open_input_stream(self._p(rel)) as f:
            return json.loads(f.read().decode())

    def write_bytes_atomic(self, rel: str, data: bytes) -> None:
        """Write to a sibling temp file, then rename over the target: a reader never sees half."""
        tmp = f"{rel}.tmp-{uuid.uuid4().hex[:8]}"
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if parent:
            self.makedirs(parent)
        with self.fs.open_output_stream(self._p(tmp)) as f:
            f.write(data)
        self.fs.move(self._p(tmp), self._p(rel))

    def write_text_atomic(self, rel: str, text: str) -> None:
        self.write_bytes_atomic(rel, text.encode())

    def write_json_atomic(self, rel: str, obj: Any) -> None:
        self.write_text_atomic(rel, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")

    def delete_dir(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.delete_dir(self._p(rel))

    def list_dir(self, rel: str) -> list[str]:
        if not self.is_dir(rel):
            return []
        sel = pafs.FileSelector(self._p(rel), recursive=False)
        return sorted(info.base_name for info in self.fs.get_file_info(sel))

    def temp_name(self, rel: str) -> str:
        """A fresh temporary sibling of `rel` (same directory, so publish is one rename)."""
        parent, _, name = rel.rpartition("/")
        tmp = f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        return f"{parent}/{tmp}" if parent else tmp

    def publish(self, tmp_rel: str, final_rel: str) -> None:
        """Replace `final_rel` by the finished `tmp_rel`: one rename, or on an object store a
        server-side copy of each file then the temp's removal. A copy cut off halfway leaves a
        partial `final_rel`, never read: the phase is marked done in the manifest only after
        this returns, and a redone phase publishes over it."""
        self.delete_dir(final_rel)
        if self.fs.type_name not in NO_DIRECTORY_RENAME:
            self.fs.move(self._p(tmp_rel), self._p(final_rel))
            return
        src, dest = self._p(tmp_rel), self._p(final_rel)
        self.fs.create_dir(dest, recursive=True)
        for info in self.fs.get_file_info(pafs.FileSelector(src, recursive=True)):
            target = dest + info.path[len(src):]
            if info.type == pafs.FileType.Directory:
                self.fs.create_dir(target, recursive=True)
            else:
                self.fs.copy_file(info.path, target)
        self.fs.delete_dir(src)

    def clean_temps(self, rel_dir: str) -> None:
        """Remove leftovers of a phase that was cut off (never read as done)."""
        for name in self.list_dir(rel_dir):
            if name.startswith(".tmp-"):
                path = f"{rel_dir}/{name}" if rel_dir else name
                if self.is_dir(path):
                    self.delete_dir(path)
                else:
                    self.fs.delete_file(self._p(path))
