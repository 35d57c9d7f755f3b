"""Modals GRACE opens, built with slack_sdk's view models so Slack's limits are
checked before `views.open` is called."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.ids import ActionId, BlockId, CallbackId, RejectForm

REASON_MAX = 1000  # characters; the reason goes into the thread, the card and the audit log
PAUSE_REASON_MAX = 500  # characters, as `/grace pause [reason]` keeps; shown in every banner


def reject_modal(form: RejectForm) -> View:
    """Rejecting a plan asks why: the reason is required and stays on the record."""
    return View(
        type="modal",
        callback_id=CallbackId.REJECT,
        private_metadata=form.encode(),
        title="Reject the plan",
        submit="Reject",
        close="Cancel",
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=(
                        f"Reject the plan of *incident #{form.incident_id}*? Nothing will be "
                        "run and the incident ends as rejected."
                    )
                )
            ),
            InputBlock(
                block_id=BlockId.REJECT_REASON,
                label="Why?",
                hint="Shown in the incident's thread and kept in the audit log.",
                element=PlainTextInputElement(
                    action_id=ActionId.REJECT_REASON,
                    multiline=True,
                    max_length=REASON_MAX,
                    placeholder="e.g. a migration is running; checkpoint after 18:00",
                ),
            ),
            ContextBlock(elements=[MarkdownTextObject(text=f"Plan `{form.plan_hash}`")]),
        ],
    )


def pause_modal() -> View:
    """Pausing from App Home: the form is the confirmation, the reason optional
    (as with `/grace pause`) and shown with the pause everywhere."""
    return View(
        type="modal",
        callback_id=CallbackId.PAUSE,
        title="Pause GRACE",
        submit="Pause",
        close="Cancel",
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=(
                        "*Pause GRACE?* Nothing new runs, tier 1 included, until an admin "
                        "resumes it; steps already running finish their current call. "
                        "Approvals still count. Every alert channel is told."
                    )
                )
            ),
            InputBlock(
                block_id=BlockId.PAUSE_REASON,
                label="Why? (optional)",
                optional=True,
                hint="Shown with the pause on every card, in every alert channel and on Homes.",
                element=PlainTextInputElement(
                    action_id=ActionId.PAUSE_REASON,
                    max_length=PAUSE_REASON_MAX,
                    placeholder="e.g. database failover in progress",
                ),
            ),
        ],
    )
