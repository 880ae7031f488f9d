"""Messages to a running job's agent (steering): queued by the API while the job has not ended, taken by its
runner, which hands them to the agent's next model request. Each message's state is `pending` until then,
`delivered` after; one still pending when the job ends was never seen by the agent (`ended`).

Key families spelled here: `job:<id>:inbox` (a list of waiting messages), `job:<id>:said` (message id → state).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson

from kilo_bridge.jobs.record import TERMINAL
from kilo_bridge.platform.redis import Store, lua

_LUA = Path(__file__).parent / "lua"
_POST, _TAKE = lua(_LUA, "post_message"), lua(_LUA, "take_messages")
MESSAGE_MAX = 20_000
Delivery = Literal["pending", "delivered", "ended"]


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    text: str


class JobInbox:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _keys(self, job_id: str) -> list[str]:
        s = self.store
        return [s.key("job", job_id, "inbox"), s.key("job", job_id, "said")]

    async def post(self, job_id: str, text: str) -> tuple[str | None, str]:
        """(the message's id, '') when queued; (None, the job's status) when it has ended (or 'missing')."""
        message_id = "msg_" + secrets.token_hex(8)
        raw = orjson.dumps({"id": message_id, "text": text})
        retention = self.store.settings.job_retention_days * 86_400
        keys = [self.store.key("job", job_id), *self._keys(job_id)]
        status = str(await self.store.run(_POST, keys, [message_id, raw, retention]) or "")
        return (None, status) if status else (message_id, "")

    async def take(self, job_id: str) -> list[Message]:
        taken = await self.store.run(_TAKE, self._keys(job_id), [])
        out = []
        for raw in taken or []:
            data = orjson.loads(raw)
            out.append(Message(str(data["id"]), str(data["text"])))
        return out

    async def delivery(self, job_id: str, message_id: str, job_status: str) -> Delivery:
        state = await self.store.call("HGET", self._keys(job_id)[1], message_id)
        if state == "delivered":
            return "delivered"
        return "ended" if job_status in TERMINAL else "pending"
