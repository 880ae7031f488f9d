"""Messages sent to a running job reach its agent through the runner's model endpoint (the door): each of the
agent's chat requests gets the messages waiting in the job's inbox appended as user messages, and every later
request of the conversation gets them again at the same place (the CLI rebuilds its requests from its own session,
which never saw them). The live log says each one delivered (`source: user`)."""

from __future__ import annotations

from typing import Any

from agent_task.context import JobContext
from kilo_bridge.jobs.inbox import JobInbox
from kilo_bridge.observability import get_logger

logger = get_logger()


class Steering:
    def __init__(self, ctx: JobContext, inbox: JobInbox) -> None:
        self.ctx, self.inbox = ctx, inbox
        self.delivered: list[tuple[int, str]] = []  # (how many messages the conversation had, the text)

    async def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        messages = data.get("messages")
        if not isinstance(messages, list) or not data.get("tools"):
            return data  # the agent's own turns only (not title or summary calls)
        out = list(messages)
        for shifted, (at, text) in enumerate(self.delivered):
            if at <= len(messages):
                out.insert(at + shifted, {"role": "user", "content": text})
        try:
            taken = await self.inbox.take(self.ctx.job_id)
        except Exception as exc:  # Redis away: the messages wait for the next request
            logger.warning("inbox not read", extra={"job_id": self.ctx.job_id, "error": type(exc).__name__})
            taken = []
        for message in taken:
            self.delivered.append((len(messages), message.text))
            out.append({"role": "user", "content": message.text})
            await self.ctx.log.line("user", message.text)
        data["messages"] = out
        return data
