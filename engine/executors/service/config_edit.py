"""Reading and rewriting one log level in a service's config file, and copying
and replacing that file safely.

Only the value's characters change: comments, key order, quoting and bytes
that are not UTF-8 stay as the operator wrote them, so undoing the edit is
putting one value back. A setting that cannot be edited that way (shared
through a YAML anchor, a block scalar, set on several lines) is refused with
the reason rather than guessed at. A file is replaced by a rename, so a crash
leaves the old file or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml


# Here, as this module imports nothing else of the package; client.py raises it too.
class ServiceError(Exception):
    """A failure retrying will not fix: a 4xx answer, an unexpected body, a
    config file that does not hold the setting where it should."""


@dataclass(frozen=True)
class _Setting:
    """Where the value sits in the text, quotes included, and how a new one is written."""

    value: str
    start: int
    end: int
    render: Callable[[str], str]


def file_level(path: Path, key: str) -> str:
    return _locate(path, _read_text(path), key).value


def set_file_level(path: Path, key: str, level: str) -> tuple[str, str]:
    """Replace only the value's characters; (before, after) as written in the file."""
    text = _read_text(path)
    setting = _locate(path, text, key)
    if setting.value.casefold() == level.casefold():
        return setting.value, setting.value
    new_value = setting.render(styled(level, setting.value))
    new = text[: setting.start] + new_value + text[setting.end :]
    after = _locate(path, new, key).value
    write_atomically(path, new.encode("utf-8", "surrogateescape"))
    return setting.value, after


def styled(level: str, like: str) -> str:
    """Write the level in the case the service already uses: Python's logging
    takes INFO but not info, and some services only take lower case."""
    if like.isupper():
        return level.upper()
    if like.islower():
        return level.lower()
    return level


def _read_text(path: Path) -> str:
    # surrogateescape: bytes that are not UTF-8 (a Latin-1 comment) survive the edit.
    return path.read_bytes().decode("utf-8", "surrogateescape")


def _format(path: Path) -> Literal["yaml", "json", "lines"]:
    suffix = path.suffix.lower()
    if suffix in (".yml", ".yaml"):
        return "yaml"
    return "json" if suffix == ".json" else "lines"


def _locate(path: Path, text: str, key: str) -> _Setting:
    locators: dict[str, Callable[[str, str], _Setting]] = {
        "yaml": _locate_yaml,
        "json": _locate_json,
        "lines": _locate_line,
    }
    try:
        return locators[_format(path)](text, key)
    except ServiceError as exc:
        raise ServiceError(f"config file {path}: {exc}") from None


def _locate_yaml(text: str, key: str) -> _Setting:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ServiceError(f"is not valid YAML: {_yaml_problem(exc)}") from None
    node: yaml.Node | None = root
    trail: list[yaml.Node] = []
    for part in key.split("."):
        if not isinstance(node, yaml.MappingNode):
            raise ServiceError(f"has no {key!r} key")
        # The last duplicate wins, as it does when the service loads the file.
        node = next((v for k, v in reversed(node.value) if k.value == part), None)
        if node is None:
            raise ServiceError(f"has no {key!r} key")
        trail.append(node)
    if not isinstance(node, yaml.ScalarNode):
        raise ServiceError(f"{key!r} is not a value")
    assert root is not None  # the key was found in it
    uses = _uses(root)
    if any(uses[id(n)] > 1 for n in trail):
        raise ServiceError(f"{key!r} is shared with other keys through an anchor; edit it by hand")
    quote = node.style or ""
    start, end = node.start_mark.index, node.end_mark.index
    written = text[start:end]
    if quote not in ("", "'", '"') or written != f"{quote}{node.value}{quote}" or "\n" in written:
        raise ServiceError(
            f"{key!r} is not a one-line value of its own (a block scalar, an anchor, "
            "escapes or several lines); edit it by hand"
        )
    return _Setting(node.value, start, end, lambda v: _yaml_scalar(v, quote))


def _uses(root: yaml.Node) -> Counter[int]:
    """How often each node appears in the document: more than once means an
    alias shares it, and editing it would change every place that uses it."""
    uses: Counter[int] = Counter()
    stack = [root]
    while stack:
        node = stack.pop()
        uses[id(node)] += 1
        if uses[id(node)] > 1:
            continue
        if isinstance(node, yaml.MappingNode):
            stack.extend(item for pair in node.value for item in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return uses


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line, for a Slack thread: what is wrong and where."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return f"{exc.problem} (line {exc.problem_mark.line + 1})"
    return " ".join(str(exc).split())


def _yaml_scalar(value: str, quote: str) -> str:
    # Plain `off` or `no` would load as a boolean, so such a level gets quotes.
    if not quote and yaml.safe_load(value) != value:
        quote = '"'
    return f"{quote}{value}{quote}"


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def _locate_json(text: str, key: str) -> _Setting:
    try:
        json.loads(text)
    except ValueError as exc:
        raise ServiceError(f"is not valid JSON: {exc}") from None
    start = end = _skip_space(text, 0)
    for part in key.split("."):
        member = _json_member(text, start, part)
        if member is None:
            raise ServiceError(f"has no {key!r} key")
        start, end = member
    if text[start] != '"':
        raise ServiceError(f"{key!r} is not a string")
    return _Setting(json.loads(text[start:end]), start, end, json.dumps)


def _json_member(text: str, pos: int, key: str) -> tuple[int, int] | None:
    """The span of the value under `key` in the object at `pos` (the last one,
    as json.loads picks); the text is known to be valid JSON."""
    if text[pos] != "{":
        return None
    decoder = json.JSONDecoder()
    found = None
    pos = _skip_space(text, pos + 1)
    while text[pos] != "}":
        name, pos = decoder.raw_decode(text, pos)
        pos = _skip_space(text, _skip_space(text, pos) + 1)  # past the colon
        _, end = decoder.raw_decode(text, pos)
        if name == key:
            found = (pos, end)
        pos = _skip_space(text, end)
        if text[pos] == ",":
            pos = _skip_space(text, pos + 1)
    return found


def _skip_space(text: str, pos: int) -> int:
    match = _JSON_SPACE.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _locate_line(text: str, key: str) -> _Setting:
    """`key=value` or `key: value` (.env, .ini, .conf, .properties), optionally
    `export`ed, quoted or followed by a comment; exactly one live line may set it."""
    head = rf"^[ \t]*(?:export[ \t]+)?{re.escape(key)}[ \t]*[=:][ \t]*"
    candidates = list(re.finditer(head + r"[^\r\n]*", text, re.MULTILINE))
    if not candidates:
        raise ServiceError(f"has no {key!r} line")
    if len(candidates) > 1:
        lines = ", ".join(str(text.count("\n", 0, m.start()) + 1) for m in candidates)
        raise ServiceError(f"sets {key!r} on several lines ({lines}); edit it by hand")
    value = r"""(?P<value>"[^"\r\n]*"|'[^'\r\n]*'|[^\s#;"']*)[ \t]*(?:[#;][^\r\n]*)?\r?$"""
    match = re.compile(head + value, re.MULTILINE).match(text, candidates[0].start())
    if match is None:
        line = text.count("\n", 0, candidates[0].start()) + 1
        raise ServiceError(f"line {line}: cannot read the value of {key!r}")
    written = match["value"]
    quote = written[0] if written[:1] in ("'", '"') else ""
    return _Setting(
        written.strip(quote) if quote else written,
        match.start("value"),
        match.end("value"),
        lambda v: f"{quote}{v}{quote}",
    )


def copy_config(source: Path, directory: Path, prefix: str) -> tuple[Path, Path, str, int]:
    """A private (0600), fsynced copy under a fresh name: (the file's realpath,
    the copy, its sha256, its size)."""
    real = Path(os.path.realpath(source))
    data = real.read_bytes()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=source.suffix or ".conf", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return real, Path(name), hashlib.sha256(data).hexdigest(), len(data)


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file beside the real file, fsync, same mode and owner, rename.

    The real file, not a symlink to it, is replaced: a symlinked config stays
    a symlink. A reader sees the old file or the new one, never half of one.
    """
    real = Path(os.path.realpath(path))
    before = real.stat()
    fd, name = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".grace", dir=real.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(name, stat.S_IMODE(before.st_mode))
        with contextlib.suppress(PermissionError):  # only root may give a file away
            os.chown(name, before.st_uid, before.st_gid)
        os.replace(name, real)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    directory = os.open(real.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
