"""A filesystem object store. On a multi-host fleet its directory is shared storage (NFS or a
mounted bucket) so that any worker can read what an upload wrote."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO


class ObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        resolved = (self.root / key).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise ValueError(f"object key {key!r} escapes the store")
        return resolved

    def put_stream(self, key: str, stream: BinaryIO, max_bytes: int) -> int:
        """Write atomically; refuse (and keep nothing) past ``max_bytes``."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(1 << 20):
                    written += len(chunk)
                    if written > max_bytes:
                        raise OversizedUpload(written, max_bytes)
                    out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return written

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".write-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)

    def copy_in(self, key: str, source: Path, max_bytes: int) -> int:
        with source.open("rb") as stream:
            return self.put_stream(key, stream, max_bytes)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix), ignore_errors=True)


class OversizedUpload(ValueError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"upload is larger than the limit of {limit} bytes (read {size} so far)")
        self.size, self.limit = size, limit
