"""A person vouches for a target GRACE was kept off, and GRACE may act on it again.

Admins only: the holds on the target are lifted, and the safe-hold or
interrupted incidents on it end `cleared`, which releases their alert groups,
so the next alert opens an incident GRACE may heal.
"""

from __future__ import annotations

from engine.models import IncidentState
from engine.narration import Narrator
from engine.ports import Store
from engine.story import HoldCleared

S = IncidentState


async def clear_target(
    store: Store, narrator: Narrator, admins: frozenset[str], user: str, name: str
) -> str:
    """What to answer the person: cleared, refused, or not held at all."""
    if user not in admins:
        await store.audit(user, "clear.refused", detail={"target": name})
        return "Only GRACE's admins may clear a target in safe hold."
    lifted = await store.clear_holds(name, actor=user)
    stuck = [
        incident
        for incident in await store.incidents_in([S.SAFE_HOLD, S.INTERRUPTED])
        if incident.plan is not None and incident.plan.target.name == name
    ]
    if not lifted and not stuck:
        held = ", ".join(f"`{h.target.name}`" for h in await store.holds()) or "none"
        return f"`{name}` is not in safe hold. Held targets: {held}."
    closed: list[int] = []
    for incident in stuck:
        moved = await store.transition(
            incident.id, incident.state, S.CLEARED, actor=user, reason=f"cleared by {user}"
        )
        if moved is not None:
            closed.append(moved.id)
            await narrator.tell(moved, HoldCleared(user=user, target=name))
            await narrator.show(moved)
    ended = sorted({h.incident_id for h in lifted} | set(closed))
    incidents = ", ".join(f"#{n}" for n in ended)
    return f"`{name}` is cleared (incident {incidents}); GRACE may act on it again."
