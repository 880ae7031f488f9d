"""Teams: a budget (and period) that caps the spend of its keys together, beside each key's own.

Owns the key families `team:<name>` (a hash: budget_nusd, budget_period, spend_nusd, reserved_nusd, period_start,
period_spend_nusd, period_reserved_nusd; admission and accounting, usage/lua/, keep its figures) and `teams` (the
set of names). A key joins a team by its `team` field (keys/store.py); a team exists once it has a budget set or
a key names it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kilo_bridge.errors import invalid
from kilo_bridge.keys.periods import iso_ms, next_start_ms, start_ms
from kilo_bridge.keys.store import KeyStore, _limit_fields, _period, check_team, key_id, team_record
from kilo_bridge.money import usd
from kilo_bridge.platform.redis import Store, hset_args

if TYPE_CHECKING:
    from kilo_bridge.keys.models import TeamView


def _num(raw: dict[str, str], name: str) -> int:
    return int(raw.get(name) or 0)


class TeamStore:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def set(self, name: str, budget_usd: float | None, budget_period: str | None) -> TeamView:
        """The team's budget and period (none: no team budget); a new period starts at the next admission."""
        if not check_team(name):
            raise invalid("name", "a team needs a name")
        limits = _limit_fields(budget_usd=budget_usd) if budget_usd is not None else {}
        fields = {"budget_nusd": limits.get("budget_nusd", 0), "budget_period": _period(budget_period)}
        record = team_record(self.store, name)
        async with self.store.guard():
            if (await self.store.field(record, "budget_period") or "") != fields["budget_period"]:
                fields["period_start"] = ""
            await self.store.pipeline(
                ("HSET", record, *hset_args(fields)), ("SADD", self.store.key("teams"), name), transaction=True
            )
        return (await self.list(only=name))[0]

    async def list(self, only: str | None = None) -> list[TeamView]:
        from kilo_bridge.keys.models import TeamView

        keys = await KeyStore(self.store).records()
        members: dict[str, list[str]] = {}
        for digest, raw in keys.items():
            if raw.get("team") and not raw.get("job"):
                members.setdefault(raw["team"], []).append(key_id(digest))
        async with self.store.guard():
            names = sorted(await self.store.members(self.store.key("teams")) | set(members))
            if only is not None:
                names = [only]
            raws = await self.store.hashes(team_record(self.store, n) for n in names)
        now = self.clock()
        views = []
        for name, raw in zip(names, raws, strict=True):
            period = raw.get("budget_period") or None
            current = period and raw.get("period_start") == str(start_ms(period, now))
            views.append(
                TeamView(
                    name=name,
                    budget_usd=usd(_num(raw, "budget_nusd")) if _num(raw, "budget_nusd") else None,
                    budget_period=period,  # type: ignore[arg-type]
                    spent_usd=usd(_num(raw, "spend_nusd")),
                    reserved_usd=usd(_num(raw, "reserved_nusd")),
                    spent_this_period_usd=usd(_num(raw, "period_spend_nusd") if current else 0) if period else None,
                    period_resets_at=iso_ms(next_start_ms(period, now)) if period else None,
                    keys=sorted(members.get(name, [])),
                )
            )
        return views
