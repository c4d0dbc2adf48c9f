"""The Roll back button under a degraded verdict: the same flow as `/platform rollback`,
approvals included, asked through the `Releases` port (never importing releases)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from engine.db import Database
from features.kit.context import Button, Context
from features.verification.messages import ROLL_BACK
from features.verification.tables import VerificationRow
from kernel.ids import SlackChannelId
from kernel.interactions import Click, Reply
from kernel.mrkdwn import code
from kernel.ports.platform import Asker, Releases


class RollBackButton(Button):
    """Roll back the service and environment of the verified release the button names
    (only the Run id comes from the click; the rest is our own record)."""

    action_id = ROLL_BACK

    def __init__(self, db: Database, releases: Releases) -> None:
        self.db, self.releases = db, releases

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        run_id = click.value.strip()[:32]

        def load(session: Session) -> VerificationRow | None:
            return session.get(VerificationRow, run_id)

        row = await self.db.run(load)
        if row is None:
            return Reply(text="I have no verified release for this button; nothing was done.")
        channel = row.channel or ctx.catalog.channel_of_service(row.service)
        await ctx.ports.messenger.post(
            channel,
            text=f":rewind: <@{ctx.user}> asked for a rollback of {code(row.service)} in "
            f"{code(row.environment)}.",
            thread_key=row.thread_key,
        )
        asker = Asker(
            user=ctx.user,
            channel=SlackChannelId(channel),
            team=ctx.team,
            request_key=ctx.request_key,
        )
        return await self.releases.rollback(
            asker,
            service=row.service,
            env=row.environment,
            reason=f"verification of Run {row.run_id} found it degraded",
            thread_key=row.thread_key,
        )
