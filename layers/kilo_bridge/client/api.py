"""HTTP calls to a Kilo Bridge server: JSON requests and server-sent event streams, the key sent as a header
(never in a URL), errors as the API's own `{"error": {code, message}}`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:5000"
RECONNECTS = 5  # a job log stream cut without its `end` (e.g. API Gateway's 15-minute limit) is resumed


class ClientError(Exception):
    """The server refused the request, or could not be reached."""

    def __init__(self, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    data: dict[str, Any]
    id: str | None = None


def _error(response: httpx.Response) -> ClientError:
    response.read()
    try:
        err = response.json()["error"]
        return ClientError(str(err["message"]), response.status_code, str(err.get("code", "")))
    except (ValueError, KeyError, TypeError):
        return ClientError(f"HTTP {response.status_code}", response.status_code)


def parse_events(lines: Iterator[str]) -> Iterator[Event]:
    """Events as the SSE format defines them: `data:` lines joined, comments skipped, `id` per event."""
    kind, event_id, data = "message", None, list[str]()
    for line in lines:
        if not line:
            if data:
                yield Event(kind, json.loads("\n".join(data)), event_id)
            kind, event_id, data = "message", None, list[str]()
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            kind = value
        elif name == "id":
            event_id = value


class Api:
    def __init__(self, url: str, key: str | None, timeout: float = 30, gateway_key: str | None = None) -> None:
        headers = {"User-Agent": "kilo-bridge-cli"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if gateway_key:  # API Gateway's usage-plan key; the service reads the Bearer key first
            headers["x-api-key"] = gateway_key
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        try:
            response = self.http.request(method, path, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach {self.http.base_url}: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise _error(response)
        return response.json() if response.status_code != 204 else None

    def stream(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Iterator[Event]:
        """The events of one stream; nothing at all when the server answers 204."""
        try:
            with self.http.stream(method, path, json=body, headers=headers, timeout=httpx.Timeout(30, read=None)) as r:
                if r.status_code >= 400:
                    raise _error(r)
                if r.status_code == 204:
                    return
                yield from parse_events(r.iter_lines())
        except httpx.TransportError as exc:
            raise ClientError(f"stream from {self.http.base_url} broke: {type(exc).__name__}") from exc

    def follow_job(self, job_id: str) -> Iterator[Event]:
        """A job's status and log events until its `end`, resuming after the last line if the stream is cut."""
        last: str | None = None
        for attempt in range(RECONNECTS + 1):
            headers = {"Last-Event-ID": last} if last else None
            try:
                for event in self.stream("GET", f"/api/kilo/job/{job_id}/logs", headers=headers):
                    if event.id:
                        last = event.id
                    yield event
                    if event.kind == "end":
                        return
                if last == "end":
                    return
            except ClientError as exc:
                if exc.status is not None or attempt == RECONNECTS:
                    raise
            time.sleep(min(2.0**attempt, 10.0))
        raise ClientError("the job's log stream kept breaking off")
