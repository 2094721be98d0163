"""A real S3 API server on this machine for the storage tests: moto's standalone server
(`python -m moto.server`, the `cluster` extra), in its own process on a free port.

`S3Server.start()` runs it and creates one bucket; `env()` is what a client needs, the standard
way (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION): pyarrow's
S3FileSystem, Ray Data and Ray Train read them from the environment of the process that opens
the URI, so a test puts them in the environment of the driver and of the raylets it starts.
The secret is random per server, so a test can look for it where it must never appear.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from ports import free_port

if TYPE_CHECKING:
    from axiom_ray.storage import Storage

START_TIMEOUT_S = 60  # moto imports a lot; the shared machine can be slow


class S3Server:
    def __init__(self, log_path: Path, bucket: str = "axiom-test") -> None:
        self.bucket = bucket
        self.log_path = log_path
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.access_key = "axiom-test-key"
        self.secret_key = f"axiom-secret-{secrets.token_hex(12)}"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookups off EC2
        }

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def start(self) -> S3Server:
        # Its own session: stop() signals this server's process group and nothing else.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(self.endpoint, timeout=2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto server did not start: {self.log_path.read_text()[-2000:]}") from None
                time.sleep(0.2)
        self._create_bucket()
        return self

    def _create_bucket(self) -> None:
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(access_key=self.access_key, secret_key=self.secret_key,
                               endpoint_override=self.endpoint, region="us-east-1",
                               allow_bucket_creation=True)
        fs.create_dir(self.bucket)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def all_keys(st: Storage) -> list[str]:
    """Every object and prefix under a Storage root on S3 (or any filesystem)."""
    import pyarrow.fs as pafs

    return [info.path for info in st.fs.get_file_info(pafs.FileSelector(st.base, recursive=True))]
