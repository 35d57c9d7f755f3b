"""How GRACE reads a message, for the person who asked ("Heal this").

Everything shown comes from the alert, which is untrusted: it is escaped and
cut, so a message cannot ping a channel or grow the answer past Slack's limits.
"""

from __future__ import annotations

from bot.blocks import TEXT_LIMIT, cap, escape, plan_text
from engine.api import Reading

NOT_AN_ALERT = (
    ":mag: GRACE finds nothing in this message it can read: it is no alert it knows the "
    "format of, and no report of trouble in a person's words."
)


def reading_text(reading: Reading) -> str:
    """What GRACE recognised, what it would do, and how to ask for it; or why nothing."""
    alert = reading.alert
    kind = escape(alert.labels.get("integration", alert.source))
    lines = [f":mag: *How GRACE reads this* ({kind}: `{escape(cap(alert.name, 120))}`)"]
    proposal = reading.proposal
    diagnosis = proposal.diagnosis if proposal else next(iter(reading.diagnoses), None)
    if diagnosis is not None:
        problem, pattern = escape(diagnosis.problem), escape(diagnosis.pattern_id)
        lines.append(
            f"*Recognised* `{problem}` (pattern `{pattern}`): {escape(diagnosis.explanation)}"
        )
    if proposal is None:
        lines.append(f"*Why no plan:* {escape(reading.refusal or 'nothing to propose.')}")
        return cap("\n".join(lines), TEXT_LIMIT)
    lines.append("It would propose this; nothing was done.")
    lines.append(plan_text(proposal.plan))
    if proposal.request:
        lines.append(f"To ask for it here: `/grace heal {escape(proposal.request)}`")
    return cap("\n".join(lines), TEXT_LIMIT)
