"""Audit artifacts of a job (`log.jsonl`, `diff.patch`, `result.json`): S3-compatible storage when
ARTIFACTS_BUCKET is set (boto3 with S3_ENDPOINT_URL, so Linode Object Storage or MinIO work), else a
local directory served back by the API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from kilo_bridge.config import Settings

ARTIFACT_NAMES = ("log.jsonl", "diff.patch", "result.json")
CONTENT_TYPES = {"log.jsonl": "application/x-ndjson", "diff.patch": "text/x-diff", "result.json": "application/json"}


def artifact_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/{name}"


class ArtifactStore(Protocol):
    async def put(self, job_id: str, name: str, data: bytes) -> str: ...
    async def url(self, job_id: str, name: str) -> str | None:
        """A URL a client can fetch the artifact from, or None when the API serves it itself."""
        ...


class LocalArtifacts:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, job_id: str, name: str) -> Path:
        return self.root / artifact_key(job_id, name)

    async def put(self, job_id: str, name: str, data: bytes) -> str:
        path = self.path(job_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return artifact_key(job_id, name)

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

    async def url(self, job_id: str, name: str) -> str | None:
        # Presigning is local computation (no request).
        return str(
            self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": artifact_key(job_id, name)}, ExpiresIn=self.ttl
            )
        )


def artifact_store(settings: Settings) -> ArtifactStore:
    return S3Artifacts(settings) if settings.artifacts_bucket else LocalArtifacts(settings.artifacts_dir)
