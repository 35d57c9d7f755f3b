"""RDS DB instances: rebooted (with failover when Multi-AZ) only after a manual DB
snapshot is available, and their status read. Nothing undoes a reboot: rollback
only waits for the instance to be available again."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from botocore.exceptions import ClientError
from pydantic import Field

from engine.executors.aws.api import Aws, code
from engine.executors.aws.operations import OPS, Service, Within, state_is
from engine.executors.aws.targets import EXECUTOR_NAME, Ref
from engine.executors.common import utc
from engine.models import Snapshot, Target
from engine.ports import Params

# DB statuses that do not turn into `available` by waiting.
_DB_STUCK = frozenset(
    {
        "stopped",
        "stopping",
        "failed",
        "deleting",
        "storage-full",
        "incompatible-parameters",
        "incompatible-network",
        "inaccessible-encryption-credentials",
    }
)


class RdsRebootParams(Params):
    KIND: ClassVar[str] = "rds"
    force_failover: bool = False


class RdsStatusIsParams(Within):
    KIND: ClassVar[str] = "rds"
    status: str = Field(default="available", pattern=r"^[a-z][a-z-]{0,63}$")


# -- actions -----------------------------------------------------------------------


@OPS.actions("rds_reboot", RdsRebootParams)
async def _reboot(
    aws: Aws, ref: Ref, params: RdsRebootParams, snapshot: Snapshot, deadline: float
) -> tuple[bool, str]:
    """A manual DB snapshot first, available before the reboot starts: the one
    thing a person can go back to, since nothing undoes a reboot."""
    if snapshot.target != Target(executor=EXECUTOR_NAME, name=f"rds:{ref.name}"):
        return False, f"refused: the step's snapshot is of {snapshot.target.name}, not {ref}"
    db = await _db(aws, ref)
    status = db["DBInstanceStatus"]
    if status != "available":
        return False, f"refused: {ref} is {status}; a reboot needs it available"
    if params.force_failover and not db.get("MultiAZ"):
        return False, f"refused: {ref} is not Multi-AZ, so there is no standby to fail over to"
    snapshot_id = snapshot.state["db_snapshot"]
    made = await _take_db_snapshot(aws, ref, snapshot_id, snapshot.incident_id)
    snap_status, snap_waited = await aws.poll(
        lambda: _db_snapshot_status(aws, ref, snapshot_id),
        lambda s: s in ("available", "failed"),
        deadline,
    )
    if snap_status != "available":
        return False, (
            f"DB snapshot {snapshot_id} of {ref.name} is {snap_status} after "
            f"{snap_waited:.0f} s, not available: {ref} was not rebooted"
        )
    await aws.call(
        ref,
        "rds",
        "reboot_db_instance",
        DBInstanceIdentifier=ref.name,
        ForceFailover=params.force_failover,
    )
    status, waited = await aws.poll(lambda: _status(aws, ref), lambda s: s == "available", deadline)
    failover = " with failover" if params.force_failover else ""
    done = f"{made} DB snapshot {snapshot_id} (available), then rebooted {ref}{failover}"
    if status != "available":
        return False, f"{done}; it is {status} after {waited:.0f} s, not available"
    return True, f"{done}; it is available again (after {waited:.1f} s)"


async def _take_db_snapshot(aws: Aws, ref: Ref, snapshot_id: str, incident_id: int) -> str:
    """'took', or 'kept' when a retried step finds the one its first try made."""
    try:
        await aws.call(
            ref,
            "rds",
            "create_db_snapshot",
            DBSnapshotIdentifier=snapshot_id,
            DBInstanceIdentifier=ref.name,
            Tags=[{"Key": "grace:incident", "Value": str(incident_id)}],
        )
    except ClientError as exc:
        if code(exc) != "DBSnapshotAlreadyExists":
            raise
        existing = await _db_snapshot(aws, ref, snapshot_id)
        if existing["DBInstanceIdentifier"] != ref.name:
            raise
        return "kept"
    return "took"


# -- checks ------------------------------------------------------------------------


@OPS.checks("rds_status_is", RdsStatusIsParams)
async def _status_is(
    aws: Aws, ref: Ref, params: RdsStatusIsParams, deadline: float
) -> tuple[bool, str]:
    return await state_is(aws, ref, "status", lambda: _status(aws, ref), params.status, deadline)


# -- snapshot and restore ----------------------------------------------------------


def _describe(ref: Ref) -> str:
    return (
        f"the status of {ref}; before a reboot a manual DB snapshot "
        "grace-<incident>-<instance>-<time> is taken and kept. A reboot cannot be "
        "undone: rollback only confirms the instance is available again"
    )


async def _snapshot(
    aws: Aws, ref: Ref, incident_id: int, taken_at: datetime
) -> tuple[dict[str, Any], str]:
    # Named now, so the incident's record says which DB snapshot a reboot takes.
    db_snapshot = _db_snapshot_id(incident_id, ref.name, taken_at)
    status = await _status(aws, ref)
    location = f"aws rds {ref.name}: {status}; a reboot first takes DB snapshot {db_snapshot}"
    return {"status": status, "db_snapshot": db_snapshot}, location


async def _restore(aws: Aws, ref: Ref, state: dict[str, Any], deadline: float) -> None:
    status, waited = await aws.poll(
        lambda: _status(aws, ref), lambda s: s == "available" or s in _DB_STUCK, deadline
    )
    if status != "available":
        raise RuntimeError(
            f"a reboot of {ref} cannot be undone, and it is {status} after "
            f"{waited:.0f} s, not available"
        )


SERVICE = Service(describe=_describe, snapshot=_snapshot, restore=_restore)


# -- reading -----------------------------------------------------------------------


def _db_snapshot_id(incident_id: int, db: str, at: datetime) -> str:
    """A valid DB snapshot identifier (letters, digits, single hyphens) that
    says who took it, for which incident, of what and when."""
    return f"grace-{incident_id}-{db}-{utc(at):%Y%m%d-%H%M%S}"


async def _db(aws: Aws, ref: Ref) -> dict[str, Any]:
    reply = await aws.call(ref, "rds", "describe_db_instances", DBInstanceIdentifier=ref.name)
    return dict(reply["DBInstances"][0])


async def _status(aws: Aws, ref: Ref) -> str:
    return str((await _db(aws, ref))["DBInstanceStatus"])


async def _db_snapshot(aws: Aws, ref: Ref, snapshot_id: str) -> dict[str, Any]:
    reply = await aws.call(ref, "rds", "describe_db_snapshots", DBSnapshotIdentifier=snapshot_id)
    return dict(reply["DBSnapshots"][0])


async def _db_snapshot_status(aws: Aws, ref: Ref, snapshot_id: str) -> str:
    return str((await _db_snapshot(aws, ref, snapshot_id))["Status"])
