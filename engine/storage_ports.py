"""Everything `bot/` asks of storage, as Protocols: one per concern.

The engine's own needs are `engine.ports.Store`; these are the rest of the
contract a store keeps, for the bot: the durable Slack outbox, storms'
rollups, the inbox of Slack deliveries, what cards, `/grace` reports and App
Home read, the weekly report's claim, the audit log's checks, and replicas'
leases and heartbeats.
`GraceStore` is all of them together, with `engine.ports.BreakerBoard` (the
circuit breakers every replica shares, for the resilience layer): what
`storage.factory.open_store` returns, whichever database `GRACE_DB` names.
Each bot module types its dependency with the ports it uses, and
tests/storage/contract/ holds every store to the promises written here.

Several GRACEs may share one database: every "once" below holds between
them (a compare-and-set in the store, never a check in the caller).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from engine.autonomy import TierChange
from engine.models import Approval, AuditEntry, Incident, Pause
from engine.ports import BreakerBoard, Store
from engine.records import (
    AuditReport,
    Card,
    Delivery,
    DigestReport,
    HomeRows,
    IncidentStory,
    OutboxItem,
    Page,
    Placement,
    Rollup,
    StatusRows,
    StormRule,
    Viewer,
)
from engine.stats import StatsReport
from engine.weekly import Period, WeeklyReport


class OutboxStore(Protocol):
    """The durable Slack outbox: every write to Slack is stored first, then sent
    by the worker, in order within its stream, until it is sent or dropped.

    A lane is a channel (Slack's rate limit is per channel), or `@` and a user
    id for ephemerals. Within a lane, a stream (an incident's card then its
    thread, the card's updates once the card is out, a rollup, a channel's
    notices) keeps the order it was queued in, whatever its rows' priorities;
    a stream's head is its oldest unsettled row.

    Several workers (one a replica) share the outbox through claims: a worker
    sends only the rows `claim_outbox` gave it, and reports each one's outcome
    as that claimer. A claimer is named `replica#suffix` (`suffix` its own).
    """

    async def enqueue(
        self,
        channel: str,
        kind: str,
        payload: Mapping[str, Any],
        *,
        incident_id: int | None = None,
        user_id: str | None = None,
        coalesce_key: str | None = None,
        once: bool = False,
        priority: int = 10,
        unless_rolled_up: bool = False,
    ) -> int | None:
        """Store a Slack write; its outbox id (None: not queued, its incident being
        shown only as a rollup line, when `unless_rolled_up`).

        With a coalesce key, a pending row with that key that is not its stream's
        head takes the new payload in place (same id, same place in line); with
        `once` too, a write with that key ever queued is that write. An ephemeral
        identical to one not yet delivered to that person is that one. A payload
        that is not JSON raises TypeError and stores nothing.
        """

    async def outbox_heads(self, now: datetime) -> list[OutboxItem]:
        """Every stream head due by `now` (a card's update only once the card is out),
        the most urgent first, then the oldest: the first of each lane is its next
        write. A read: whether claimed or not (what a worker sends is `claim_outbox`)."""

    async def claim_outbox(
        self,
        claimer: str,
        now: datetime,
        *,
        rate: float,
        burst: int,
        lease_s: float,
        limit: int,
    ) -> list[OutboxItem]:
        """In one write: up to `limit` lanes' next writes (`outbox_heads`' choice) that
        no live claim holds, each with a token of its lane's pace (at most `burst` at
        once and `rate` a second, for every claimer together; none while a 429
        holds the lane), marked `sending` and claimed by `claimer` for `lease_s`
        seconds. Each comes back as it was: `sending` when an earlier attempt may
        have reached Slack (a claim that ran out, its sender dead: look it up
        first). Claimers claiming at once never get the same row, and a stream's
        next row is no head while its head is claimed."""

    async def outbox_next_due(
        self, now: datetime, *, rate: float | None = None, burst: int = 1
    ) -> datetime | None:
        """When the soonest head not claimable at `now` becomes claimable (its
        not_before, another's claim running out, a 429's hold on its lane, and,
        given the `rate` and `burst` claims are made at, its lane's next token);
        None if there is none."""

    async def release_outbox_claims(self, replica: str, now: datetime) -> int:
        """Every live claim of `replica`'s claimers ends at `now`, their rows claimable
        (in doubt) at once: asked at a worker's start (the replica's earlier process
        is gone) and at a clean stop. How many rows they held."""

    async def outbox_waiting(self, coalesce_key: str) -> bool:
        """A write with this coalesce key is queued and no worker has claimed it yet:
        it renders when sent, so it will show any change made before then."""

    async def mark_sent(
        self, item_id: int, slack_ts: str | None, *, claimer: str | None = None
    ) -> None:
        """Delivered. A delivered `post_card` becomes its incident's card in the same
        write. A settled row ignores later marks; an unknown id raises LookupError.

        This and the other marks apply only while the row's claim is `claimer`'s
        (None: a row no worker claimed): a claimer whose claim ran out and was
        taken by another changes nothing the other does."""

    async def retry_later(
        self,
        item_id: int,
        not_before: datetime,
        error: str,
        *,
        maybe_delivered: bool = False,
        claimer: str | None = None,
        hold_lane: bool = False,
    ) -> None:
        """Not delivered this time: the row stays its stream's head until `not_before`,
        its claim ended. `maybe_delivered` keeps it `sending` (look before re-posting).
        `hold_lane` (Slack said 429): nothing of the row's lane is claimed before
        `not_before`, by any claimer."""

    async def drop(self, item_id: int, error: str, *, claimer: str | None = None) -> None:
        """Slack refused it for good: kept for the record, no longer in line."""

    async def outbox_pending(self) -> int:
        """Rows not yet sent or dropped."""

    async def card_of(self, incident_id: int) -> Card | None:
        """Where the incident's live card is, once it was delivered."""

    async def sent_ts(self, item_id: int) -> str | None:
        """The Slack ts a row became, once it was sent."""

    async def card_queued(self, incident_id: int) -> bool:
        """Whether the incident's card was ever queued, sent or not."""


class RollupStore(Protocol):
    """Storms: an incident whose card would wait too long is a line of its
    channel's rollup message, deciding and queueing in one transaction."""

    async def place_card(
        self, incident: Incident, *, priority: int, needs_someone: bool, rule: StormRule
    ) -> Placement:
        """Queue the incident's card, or show it in its channel's rollup."""

    async def promote(
        self, incident_id: int, *, priority: int, story_priority: int, story_text: str
    ) -> bool:
        """A card of its own, with its story so far under it, for an incident shown in
        a rollup; False when its card was queued already (so once)."""

    async def refresh_rollup_of(self, incident_id: int) -> bool:
        """Redraw the rollup line of an incident shown only there; False if it has a card."""

    async def rolled_up_incidents(self) -> dict[int, int]:
        """Every incident shown only as a rollup line, and the rollup it is in."""

    async def rollup(self, rollup_id: int) -> Rollup | None:
        """A rollup and its incidents, as of one moment."""


class InboxStore(Protocol):
    """Slack deliveries, durable before Slack is answered and handled once."""

    async def accept_delivery(self, key: str, kind: str, payload: Mapping[str, Any]) -> int | None:
        """Store a delivery; None, storing nothing, when its key was accepted before."""

    async def delivery_handled(self, delivery_id: int) -> None:
        """Its handler ran; a second report changes nothing."""

    async def unhandled_deliveries(self, before: datetime | None = None) -> list[Delivery]:
        """Deliveries accepted but not handled (GRACE died in between), oldest first."""

    async def forget_deliveries(self, before: datetime) -> None:
        """Forget handled deliveries older than `before` (their keys only guard
        retries); unhandled ones stay."""


class IncidentReads(Protocol):
    """What a card, a click on it, a rollup's menu and a card's story read."""

    async def get_incident(self, incident_id: int) -> Incident | None: ...

    async def incident_for_card(self, channel: str, ts: str) -> Incident | None:
        """The incident whose live card is message `ts` in `channel`."""

    async def approvals(self, incident_id: int) -> list[Approval]:
        """Decisions on the incident, in the order given."""

    async def paused(self) -> Pause | None:
        """The kill switch as stored."""

    async def incident_story(self, incident_id: int) -> IncidentStory | None:
        """Everything stored about one incident; None if unknown."""


class CardStore(OutboxStore, RollupStore, IncidentReads, Protocol):
    """The outbox and what cards are drawn from: the notifier's and the worker's."""


class ReportStore(Protocol):
    """`/grace status`, `incidents` and `stats`: each read as of one moment."""

    async def paused(self) -> Pause | None: ...

    async def status_rows(self, limit: int = 20) -> StatusRows:
        """Open incidents by state, the first `limit` pending approvals (soonest
        deadline first) and the outbox backlog."""

    async def incident_page(self, *, open_only: bool, limit: int = 20) -> Page[Incident]:
        """The newest `limit` incidents (not ended, or all) and their total."""

    async def incident_story(self, incident_id: int) -> IncidentStory | None:
        """Everything stored about one incident; None if unknown."""

    async def stats(self, *, until: datetime, days: int) -> StatsReport:
        """The last `days` days up to `until`, and as many before them."""

    async def playbook_tiers(self) -> dict[str, TierChange]:
        """Playbooks whose tier was changed from the catalog's, by id."""


class HomeStore(Protocol):
    """App Home: who opened it, GRACE's answers there, and what every Home shows."""

    async def home_opened(self, user: str, channel: str) -> None:
        """`user` opened the Home (its channel is `channel`): durable, so a restart
        republishes theirs. Opening it again updates the one row."""

    async def home_notice(self, user: str, text: str) -> bool:
        """GRACE's answer to `user` on their Home; False when they never opened it."""

    async def home_viewers(self) -> list[Viewer]:
        """Everyone who ever opened the Home: one each."""

    async def home_rows(
        self, week: tuple[datetime, datetime], *, pending_limit: int, open_limit: int
    ) -> HomeRows:
        """What every Home shows, as of one moment; `week` is [start, end)."""


class WeeklyStore(Protocol):
    """The weekly report: its numbers, and the claim that posts each period once."""

    async def installed_at(self) -> datetime:
        """When this database was created: no report is due for a period before it."""

    async def report_claimed(self, period: Period) -> bool: ...

    async def claim_report(
        self, period: Period, channel: str, message: Mapping[str, Any], chart: Mapping[str, Any]
    ) -> bool:
        """Claim the period and queue its message, then its chart (in one stream, the
        chart's payload naming the message's row as `after`), in one transaction;
        False, queueing nothing, when the period was claimed before."""

    async def weekly_report(self, period: Period, tz: str, days: list[Period]) -> WeeklyReport:
        """The report's numbers for `period` and each of its `days`, as of one moment."""

    async def playbook_tiers(self) -> dict[str, TierChange]: ...


class AuditStore(Protocol):
    """The append-only, hash-chained audit log, read and checked."""

    async def audit_entries(
        self, incident_id: int | None = None, *, since: datetime | None = None
    ) -> list[AuditEntry]:
        """The log in order, or one incident's rows, from `since` on."""

    async def verify_audit(self) -> AuditReport:
        """Recompute the chain: every row's hash over its content and the row before."""

    async def verify_alert_digests(self) -> DigestReport:
        """Each delivery's audit row against the stored alerts it attests."""


class LeaseStore(Protocol):
    """Named leases, so work every replica could do is done by one at a time (the
    scheduler's ticks), and heartbeats, so the others can tell a replica died.

    Times are the store's clock; a lease or a heartbeat older than its TTL is free
    or dead whichever replica asks."""

    async def hold_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take the lease `name` for `ttl_s` seconds from now if it is free, expired or
        `holder`'s already (which renews it); False, changing nothing, while another
        holder's is in force. Of replicas asking at once, one wins."""

    async def release_lease(self, name: str, holder: str) -> None:
        """Let the lease go at a clean stop, if `holder` holds it, so another replica
        takes it at once rather than after its TTL."""

    async def heartbeat(self, replica: str, started_at: datetime) -> None:
        """`replica` (started at `started_at`) is alive now: its runs are its own
        while its last beat is younger than the liveness TTL (`Store.orphaned_runs`)."""


class GraceStore(
    Store,
    CardStore,
    InboxStore,
    ReportStore,
    HomeStore,
    WeeklyStore,
    AuditStore,
    BreakerBoard,
    LeaseStore,
    Protocol,
):
    """Every port together: one store, as `storage.factory.open_store` opens it."""

    async def close(self) -> None:
        """Finish the queued writes, then let go of the database."""
