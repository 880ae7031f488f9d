"""Audit artifacts of a job (`log.jsonl`, `diff.patch`, `result.json`): S3-compatible storage when
ARTIFACTS_BUCKET is set (boto3 with S3_ENDPOINT_URL, so Linode Object Storage or MinIO work), else a
local directory served back by the API."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Protocol

from kilo_bridge.config import Settings

ARTIFACT_NAMES = ("log.jsonl", "diff.patch", "result.json")
# A job's CLI session, sealed with the secrets box for that job alone (a follow-up imports it): kept with the
# artifacts for their retention, never listed, linked or served (not in ARTIFACT_NAMES).
SESSION_ARTIFACT = "session.sealed"
CONTENT_TYPES = {"log.jsonl": "application/x-ndjson", "diff.patch": "text/x-diff", "result.json": "application/json"}


def artifact_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/{name}"


class ArtifactStore(Protocol):
    async def put(self, job_id: str, name: str, data: bytes) -> str: ...
    async def get(self, job_id: str, name: str) -> bytes | None:
        """The artifact's bytes, or None when it was never stored."""
        ...

    async def url(self, job_id: str, name: str) -> str | None:
        """A URL a client can fetch the artifact from, or None when the API serves it itself."""
        ...


class LocalArtifacts:
    """Files only the server's user may read (directories 0700, files 0600, whatever the umask): an agent run
    as another local user (AGENT_SANDBOX=user) must not read any job's log."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, job_id: str, name: str) -> Path:
        return self.root / artifact_key(job_id, name)

    def _private_dirs(self, leaf: Path) -> None:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        chain = [self.root]
        for part in leaf.relative_to(self.root).parts:
            chain.append(chain[-1] / part)
        for directory in chain:
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=0o700)
            directory.chmod(0o700)  # one made earlier, or under another umask

    async def put(self, job_id: str, name: str, data: bytes) -> str:
        path = self.path(job_id, name)
        self._private_dirs(path.parent)
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # a stale .tmp of another mode keeps its mode through O_CREAT
            out.write(data)
        tmp.replace(path)
        return artifact_key(job_id, name)

    async def get(self, job_id: str, name: str) -> bytes | None:
        path = self.path(job_id, name)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def url(self, job_id: str, name: str) -> str | None:
        return None  # served by the API's artifact route


class S3Artifacts:
    def __init__(self, settings: Settings) -> None:
        from kilo_bridge.platform.aws import client

        self.bucket = settings.artifacts_bucket
        self.ttl = settings.artifact_url_ttl_s
        self.s3 = client("s3", settings)

    async def put(self, job_id: str, name: str, data: bytes) -> str:
        key = artifact_key(job_id, name)
        await asyncio.to_thread(
            self.s3.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=CONTENT_TYPES.get(name, "application/octet-stream"),
        )
        return key

    async def get(self, job_id: str, name: str) -> bytes | None:
        try:
            got = await asyncio.to_thread(self.s3.get_object, Bucket=self.bucket, Key=artifact_key(job_id, name))
        except self.s3.exceptions.NoSuchKey:
            return None
        return bytes(await asyncio.to_thread(got["Body"].read))

    async def url(self, job_id: str, name: str) -> str | None:
        # Presigning is local computation (no request).
        return str(
            self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": artifact_key(job_id, name)}, ExpiresIn=self.ttl
            )
        )


def artifact_store(settings: Settings) -> ArtifactStore:
    return S3Artifacts(settings) if settings.artifacts_bucket else LocalArtifacts(settings.artifacts_dir)
