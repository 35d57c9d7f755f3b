"""What Slack refuses in Block Kit: DevSlack holds every message and view to these
limits, so blocks that pass here pass in Slack too."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100

_ALL_BLOCK_TYPES = {
    "section",
    "header",
    "divider",
    "context",
    "actions",
    "image",
    "input",
    "rich_text",
    "markdown",
    "video",
    "file",
    "table",
    "context_actions",
}


def _too_long(errs: list[str], value: Any, limit: int, pointer: str) -> None:
    if isinstance(value, str) and len(value) > limit:
        errs.append(f"must be less than {limit + 1} characters [json-pointer:{pointer}]")


def _text_obj(
    errs: list[str], obj: Any, limit: int, pointer: str, plain_only: bool = False
) -> None:
    kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        errs.append(f"must be a text object [json-pointer:{pointer}]")
    elif obj.get("type") not in kinds:
        errs.append(f"must be one of {', '.join(kinds)} [json-pointer:{pointer}/type]")
    elif not obj["text"]:
        errs.append(f"must be more than 0 characters [json-pointer:{pointer}/text]")
    else:
        _too_long(errs, obj["text"], limit, f"{pointer}/text")


def _element(errs: list[str], el: Any, pointer: str) -> None:
    if not isinstance(el, dict) or "type" not in el:
        errs.append(f"missing required field: type [json-pointer:{pointer}]")
        return
    _too_long(errs, el.get("action_id"), 255, f"{pointer}/action_id")
    if el["type"] == "button":
        _text_obj(errs, el.get("text"), 75, f"{pointer}/text", plain_only=True)
        _too_long(errs, el.get("value"), 2000, f"{pointer}/value")
        _too_long(errs, el.get("url"), 3000, f"{pointer}/url")
        if el.get("style") not in (None, "primary", "danger"):
            errs.append(f"must be one of primary, danger [json-pointer:{pointer}/style]")
        if "confirm" in el:
            _confirm(errs, el["confirm"], f"{pointer}/confirm")


def _confirm(errs: list[str], confirm: Any, pointer: str) -> None:
    """A confirm dialog: Slack shows it before the click is sent."""
    if not isinstance(confirm, dict):
        errs.append(f"must be an object [json-pointer:{pointer}]")
        return
    _text_obj(errs, confirm.get("title"), 100, f"{pointer}/title", plain_only=True)
    _text_obj(errs, confirm.get("text"), 300, f"{pointer}/text")
    _text_obj(errs, confirm.get("confirm"), 30, f"{pointer}/confirm", plain_only=True)
    _text_obj(errs, confirm.get("deny"), 30, f"{pointer}/deny", plain_only=True)
    if confirm.get("style") not in (None, "primary", "danger"):
        errs.append(f"must be one of primary, danger [json-pointer:{pointer}/style]")


def _block(errs: list[str], b: dict[str, Any], p: str) -> None:
    kind = b["type"]
    if kind == "section":
        if "text" not in b and "fields" not in b:
            errs.append(f"must provide either text or fields [json-pointer:{p}]")
        if "text" in b:
            _text_obj(errs, b["text"], 3000, f"{p}/text")
        fields = b.get("fields", [])
        if len(fields) > 10:
            errs.append(f"must contain no more than 10 items [json-pointer:{p}/fields]")
        for i, f in enumerate(fields):
            _text_obj(errs, f, 2000, f"{p}/fields/{i}")
        if "accessory" in b:
            _element(errs, b["accessory"], f"{p}/accessory")
    elif kind == "header":
        _text_obj(errs, b.get("text"), 150, f"{p}/text", plain_only=True)
    elif kind in ("context", "actions"):
        limit = 10 if kind == "context" else 25
        elements = b.get("elements") or []
        if not elements or len(elements) > limit:
            errs.append(f"must contain between 1 and {limit} items [json-pointer:{p}/elements]")
        ids: set[str] = set()
        for i, el in enumerate(elements):
            if kind == "context":
                if not (isinstance(el, dict) and el.get("type") == "image"):
                    _text_obj(errs, el, 3000, f"{p}/elements/{i}")
                continue
            _element(errs, el, f"{p}/elements/{i}")
            aid = el.get("action_id") if isinstance(el, dict) else None
            if aid is not None:
                if aid in ids:
                    errs.append(f"duplicate action_id [json-pointer:{p}/elements/{i}/action_id]")
                ids.add(aid)
    elif kind == "image":
        _too_long(errs, b.get("image_url"), 3000, f"{p}/image_url")
        _too_long(errs, b.get("alt_text"), 2000, f"{p}/alt_text")
    elif kind == "input":
        _text_obj(errs, b.get("label"), 2000, f"{p}/label", plain_only=True)
        _element(errs, b.get("element"), f"{p}/element")


def block_errors(
    blocks: Any, pointer: str = "/blocks", max_blocks: int = MAX_MESSAGE_BLOCKS
) -> list[str]:
    """Slack's complaints about a block list, each ending in a json-pointer."""
    if not isinstance(blocks, list):
        return [f"must be an array [json-pointer:{pointer}]"]
    errs: list[str] = []
    if len(blocks) > max_blocks:
        errs.append(f"no more than {max_blocks} items allowed [json-pointer:{pointer}]")
    seen: set[str] = set()
    for i, b in enumerate(blocks):
        p = f"{pointer}/{i}"
        if not isinstance(b, dict) or b.get("type") not in _ALL_BLOCK_TYPES:
            errs.append(f"unsupported block type [json-pointer:{p}/type]")
            continue
        bid = b.get("block_id")
        if bid is not None:
            _too_long(errs, bid, 255, f"{p}/block_id")
            if bid in seen:
                errs.append(f"duplicate block_id [json-pointer:{p}/block_id]")
            seen.add(bid)
        _block(errs, b, p)
    return errs


def view_errors(view: dict[str, Any]) -> list[str]:
    """Slack's complaints about a view (a modal or App Home) of a known type."""
    errs = block_errors(view.get("blocks"), "/view/blocks", MAX_VIEW_BLOCKS)
    if view["type"] == "modal":
        for key in ("title", "submit", "close"):
            if key in view or key == "title":
                _text_obj(errs, view.get(key), 24, f"/view/{key}", plain_only=True)
    _too_long(errs, view.get("private_metadata"), 3000, "/view/private_metadata")
    _too_long(errs, view.get("callback_id"), 255, "/view/callback_id")
    return errs


def with_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill in block_id and action_id where missing, as Slack does when it stores blocks."""
    out = copy.deepcopy(blocks)
    for b in out:
        b.setdefault("block_id", secrets.token_urlsafe(3))
        elements = b.get("elements", []) if b["type"] == "actions" else []
        for el in [*elements, b.get("accessory"), b.get("element")]:
            if isinstance(el, dict) and el.get("type") != "image":
                el.setdefault("action_id", secrets.token_urlsafe(3))
    return out


def buttons(blocks: Sequence[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """A message's buttons, each with its block's id: what a person can click."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    for b in blocks:
        for el in [*b.get("elements", []), b.get("accessory")]:
            if isinstance(el, dict) and el.get("type") == "button":
                out.append((b.get("block_id", ""), el))
    return out
