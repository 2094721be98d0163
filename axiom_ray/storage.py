"""The run directory on any pyarrow filesystem (a local path, file://, s3://, gs://, ...).

Phases write under a temporary name and are published with one rename (or copy, where the
filesystem has no rename), so a reader never sees half a phase. Pure: pyarrow only.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any


def _fs():
    import pyarrow.fs as pafs

    return pafs


def normalize_uri(uri: str) -> str:
    """Local paths become absolute (a Ray job's working directory is a temporary copy, so a
    relative path would put the run somewhere the user never looks); URIs pass through."""
    if "://" in uri:
        return uri.rstrip("/")
    return str(Path(os.path.expanduser(uri)).resolve())


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


class Storage:
    """Paths relative to a root URI, and the few operations the loop needs."""

    def __init__(self, root: str) -> None:
        self.root = normalize_uri(root)
        self.fs, self.base = _fs().FileSystem.from_uri(self.root if "://" in self.root else self.root)

    def uri(self, *parts: str) -> str:
        """A URI (or absolute local path) for Ray Data, Ray Train and pyarrow readers."""
        return "/".join([self.root, *parts]) if parts else self.root

    def _p(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self._p(rel)).type != _fs().FileType.NotFound

    def is_dir(self, rel: str) -> bool:
        return self.fs.get_file_info(self._p(rel)).type == _fs().FileType.Directory

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
        sel = _fs().FileSelector(self._p(rel), recursive=False)
        return sorted(info.base_name for info in self.fs.get_file_info(sel))

    def temp_name(self, rel: str) -> str:
        """A fresh temporary sibling of `rel` (same directory, so publish is one rename)."""
        parent, _, name = rel.rpartition("/")
        tmp = f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        return f"{parent}/{tmp}" if parent else tmp

    def publish(self, tmp_rel: str, final_rel: str) -> None:
        """Replace `final_rel` by the finished `tmp_rel`."""
        self.delete_dir(final_rel)
        self.fs.move(self._p(tmp_rel), self._p(final_rel))

    def clean_temps(self, rel_dir: str) -> None:
        """Remove leftovers of a phase that was cut off (never read as done)."""
        for name in self.list_dir(rel_dir):
            if name.startswith(".tmp-"):
                path = f"{rel_dir}/{name}" if rel_dir else name
                if self.is_dir(path):
                    self.delete_dir(path)
                else:
                    self.fs.delete_file(self._p(path))

    def download_dir(self, rel: str, local_dir: str) -> str:
        """Copy a directory to a local folder (for readers that need local files)."""
        if is_local(self.root):
            return str(Path(self._p(rel)))
        _fs().copy_files(self._p(rel), local_dir, source_filesystem=self.fs,
                         destination_filesystem=_fs().LocalFileSystem())
        return local_dir

    def upload_dir(self, local_dir: str, rel: str) -> None:
        _fs().copy_files(local_dir, self._p(rel), source_filesystem=_fs().LocalFileSystem(),
                         destination_filesystem=self.fs)
