"""The sealing box: secrets (a job's `profileEnv`, a profile's values, a trigger's secret) sealed before they reach
Redis or a queue, opened only by whoever needs them (the runner, a job's submission).

AWS: KMS envelope encryption (a data key per job, the job id as encryption context, so a blob copied onto
another job does not open). Locally: AES-GCM with a key from JOB_SECRETS_KEY or a key file made once
(mode 0600). Both bind the blob to its job id as associated data, and to whatever else the caller binds it to
(`bound`: a job's identity, `jobs.record.job_binding`): a record rewritten in Redis after submission no longer
opens its secrets (`SealBroken`), so nothing runs with them. The box knows nothing of jobs.

Saved profiles (kilo_bridge/profiles/) use the same boxes under another scope: the encryption context is
`{"profile": "<owner>/<name>"}` instead of `{"jobId": ...}`, so a key policy can let the API open profiles
(to copy one into a job) and never a job's own secrets.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Protocol

import orjson

from kilo_bridge.config import Settings

NONCE = 12
JOB_SCOPE = "jobId"


class SealBroken(Exception):
    """A sealed blob did not open: it, or the record it is bound to, was changed after it was sealed."""


class SecretBox(Protocol):
    def seal(self, job_id: str, values: dict[str, str], scope: str = JOB_SCOPE, bound: bytes = b"") -> str: ...
    def open(self, job_id: str, blob: str, scope: str = JOB_SCOPE, bound: bytes = b"") -> dict[str, str]: ...


def _aad(scope: str, name: str, bound: bytes = b"") -> bytes:
    # A job's blobs keep their original associated data (the bare id); other scopes name themselves.
    base = name.encode() if scope == JOB_SCOPE else f"{scope}={name}".encode()
    return base + b"\x00" + bound if bound else base


def _decrypt(key: bytes, raw: bytes, aad: bytes) -> dict[str, str]:
    from cryptography.exceptions import InvalidTag

    try:
        return _env(_aesgcm(key).decrypt(raw[:NONCE], raw[NONCE:], aad))
    except InvalidTag:
        raise SealBroken("the sealed secrets do not open for this record") from None


def _aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # imported when a job needs it

    return AESGCM(key)


def _env(plaintext: bytes) -> dict[str, str]:
    values = orjson.loads(plaintext)
    return {str(k): str(v) for k, v in values.items()}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class LocalBox:
    """AES-256-GCM under one local key."""

    prefix = "v1.local."

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the job secrets key must be 32 bytes")
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalBox:
        if settings.job_secrets_key:
            return cls(base64.b64decode(settings.job_secrets_key.get_secret_value()))
        path = Path(settings.job_secrets_key_file)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:  # O_EXCL: two processes starting at once agree on one key
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(base64.b64encode(os.urandom(32)))
            except FileExistsError:
                pass
        return cls(base64.b64decode(path.read_bytes().strip()))

    def seal(self, job_id: str, values: dict[str, str], scope: str = JOB_SCOPE, bound: bytes = b"") -> str:
        nonce = os.urandom(NONCE)
        sealed = _aesgcm(self._key).encrypt(nonce, orjson.dumps(values), _aad(scope, job_id, bound))
        return self.prefix + _b64(nonce + sealed)

    def open(self, job_id: str, blob: str, scope: str = JOB_SCOPE, bound: bytes = b"") -> dict[str, str]:
        raw = base64.b64decode(blob.removeprefix(self.prefix))
        return _decrypt(self._key, raw, _aad(scope, job_id, bound))


class KmsBox:
    """Envelope encryption: KMS makes a data key per job; only its encrypted form is stored."""

    prefix = "v1.kms."

    def __init__(self, kms: Any, key_id: str) -> None:
        self._kms, self._key_id = kms, key_id

    def seal(self, job_id: str, values: dict[str, str], scope: str = JOB_SCOPE, bound: bytes = b"") -> str:
        data_key = self._kms.generate_data_key(KeyId=self._key_id, KeySpec="AES_256", EncryptionContext={scope: job_id})
        nonce = os.urandom(NONCE)
        sealed = _aesgcm(data_key["Plaintext"]).encrypt(nonce, orjson.dumps(values), _aad(scope, job_id, bound))
        envelope = {"k": _b64(data_key["CiphertextBlob"]), "d": _b64(nonce + sealed)}
        return self.prefix + _b64(orjson.dumps(envelope))

    def open(self, job_id: str, blob: str, scope: str = JOB_SCOPE, bound: bytes = b"") -> dict[str, str]:
        envelope = orjson.loads(base64.b64decode(blob.removeprefix(self.prefix)))
        key = self._kms.decrypt(CiphertextBlob=base64.b64decode(envelope["k"]), EncryptionContext={scope: job_id})[
            "Plaintext"
        ]
        return _decrypt(key, base64.b64decode(envelope["d"]), _aad(scope, job_id, bound))


def secret_box(settings: Settings) -> SecretBox:
    if settings.job_secrets_kms_key_id:
        from kilo_bridge.platform.aws import client

        return KmsBox(client("kms", settings), settings.job_secrets_kms_key_id)
    return LocalBox.from_settings(settings)
