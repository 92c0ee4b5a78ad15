"""Multimodal content blocks, and the content parts the wire carries for them.

The published SDK lets a trace, workflow or agent input/output, and a message's ``content``, be a list of
content blocks: its ``TextContentBlock`` / ``DataContentBlock`` models (``{"type": "text", "text": ...}``,
``{"type": "data", "modality": ..., "url" | "base64": ...}``), galileo_core's ``TextContentPart`` /
``FileContentPart``, and LangChain / OpenAI multimodal dicts (``image_url``, ``audio_url``, ``video_url``,
``document_url``, ``input_image``, ``input_audio``, ``file``). :func:`content_parts` recognises such a list
(every element one of those, as a dict or as an object with the same attributes: duck-typed, pydantic is not
our dependency; :class:`TextContentBlock` and :class:`DataContentBlock` are ours, re-exported by
:mod:`galileo.schema`) and returns it as :class:`TextPart` / :class:`FilePart` values; anything else gives
``None`` and keeps the shape it had before.

The wire (Galileo's ingest schemas) knows two content parts: ``{"type": "text", "text"}`` and
``{"type": "file", "file_id"}`` (a file already uploaded to Galileo; its id a UUID 4). So a text block is a
text part, a file part with a UUID 4 id stays a file part, and media given inline (a URL, a data URI, base64)
becomes a text part that names it: ``"[image: https://…/cat.png]"``, or, for inline bytes, their modality,
MIME type and size (``"[image: image/png, 1024 base64 characters]"``), never the bytes themselves. The
published SDK sends such media as ``{"type": "data", ...}`` blocks, which the schemas do not accept.

Design: this module is a leaf (stdlib and attrs only); :mod:`galileo._coerce` calls it off its fast path
(plain strings never get here) and applies the size policy to the text parts it returns.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, TypeAlias

import attrs

__all__ = [
    "ContentPart",
    "DataContentBlock",
    "FilePart",
    "TextContentBlock",
    "TextPart",
    "block_instances",
    "content_parts",
    "message_content",
    "parts_text",
]


@attrs.frozen
class TextPart:
    """A text content part."""

    text: str
    type: ClassVar[str] = "text"

    def to_wire(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


@attrs.frozen
class FilePart:
    """A reference to a file uploaded to Galileo (its id a UUID 4)."""

    file_id: str
    type: ClassVar[str] = "file"

    def to_wire(self) -> dict[str, Any]:
        return {"type": "file", "file_id": self.file_id}


ContentPart: TypeAlias = "TextPart | FilePart"


@attrs.frozen(kw_only=True)
class TextContentBlock:
    """The published ``TextContentBlock``: a text segment of a multimodal input, output or message."""

    text: str
    index: int | None = None
    metadata: dict[str, str] | None = None
    type: ClassVar[str] = "text"


@attrs.frozen(kw_only=True)
class DataContentBlock:
    """The published ``DataContentBlock``: media given by ``url`` (a data URI too) or ``base64``; ours sends
    it as a text part naming it (see the module docstring)."""

    modality: str
    mime_type: str | None = None
    base64: str | None = None
    url: str | None = None
    index: int | None = None
    metadata: dict[str, str] | None = None
    type: ClassVar[str] = "data"


# LangChain / OpenAI block types that carry media, and the modality each names (the published mapping).
_MEDIA_TYPES: Final = {
    "image_url": "image",
    "audio_url": "audio",
    "video_url": "video",
    "document_url": "document",
    "input_image": "image",
    "input_audio": "audio",
}
_MIME_MODALITY: Final = {"image": "image", "audio": "audio", "video": "video", "application": "document"}
_DATA_URI: Final = re.compile(r"data:([^;,]+)?(?:;base64)?,")


def content_parts(value: Any) -> list[ContentPart] | None:
    """``value`` as content parts when it is a non-empty list or tuple of content blocks, else None."""
    if not isinstance(value, (list, tuple)) or not value:
        return None
    parts: list[ContentPart] = []
    for item in value:
        part = _part(item)
        if part is None:
            return None
        parts.append(part)
    return parts


def block_instances(value: Any) -> list[ContentPart] | None:
    """Like :func:`content_parts`, for lists of block objects only (no dicts): what the published ``@log``
    keeps as content blocks when a function returns them."""
    if not isinstance(value, list) or not value or any(isinstance(item, Mapping) for item in value):
        return None
    return content_parts(value)


def message_content(content: Any) -> str | list[ContentPart] | None:
    """A message's ``content`` given as a list: text pieces only (strings, text blocks) joined into one
    string; content blocks with media as content parts; None for anything else."""
    if not isinstance(content, (list, tuple)):
        return None
    if all(_is_text_piece(p) for p in content):
        return "".join(p if isinstance(p, str) else p["text"] for p in content)
    parts = content_parts([TextPart(p) if isinstance(p, str) else p for p in content])
    if parts is None:
        return None
    if all(isinstance(p, str) or _is_text_block(p) for p in content):  # text block objects, as dicts
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    return parts


def parts_text(parts: list[ContentPart]) -> str:
    """Content parts as one text: text parts as they are, file parts by id, one part per line."""
    return "\n".join(p.text if isinstance(p, TextPart) else f"[file: {p.file_id}]" for p in parts)


def _is_text_piece(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, Mapping) and isinstance(value.get("text"), str))


def _is_text_block(value: Any) -> bool:
    return not isinstance(value, (TextPart, FilePart)) and getattr(value, "type", None) == "text"


def _part(item: Any) -> ContentPart | None:
    if isinstance(item, (TextPart, FilePart)):
        return item
    if isinstance(item, Mapping):
        kind = item.get("type")
        get: Callable[..., Any] = item.get
    elif isinstance(item, (str, bytes, int, float, list, tuple, type)) or item is None:
        return None
    else:  # a block object (pydantic, attrs, ...): read by attribute
        kind = getattr(item, "type", None)
        get = functools.partial(getattr, item)
    if type(kind) is not str:  # most lists that are not blocks stop here (messages, documents, records)
        return None
    if kind == "text":
        text = get("text")
        return TextPart(text) if isinstance(text, str) else None
    if kind == "data":
        modality = _enum_value(get("modality"))
        url, data = get("url"), get("base64")
        if not isinstance(modality, str) or not (isinstance(url, str) or isinstance(data, str)):
            return None
        return _media(modality, url, data, get("mime_type"))
    if kind == "file":
        return _file(item, get)
    if kind in _MEDIA_TYPES and isinstance(item, Mapping):
        return _langchain_media(kind, item)
    return None


def _file(item: Any, get: Callable[..., Any]) -> ContentPart | None:
    file_id = get("file_id")
    if file_id is not None:
        file_id = str(file_id)
        return FilePart(file_id) if _is_uuid4(file_id) else TextPart(f"[file: {file_id}]")
    inner = get("file")
    if not isinstance(item, Mapping) or not isinstance(inner, Mapping):
        return None
    data = inner.get("file_data")
    match = _DATA_URI.match(data) if isinstance(data, str) else None
    if match is None or not isinstance(data, str):
        return TextPart(_dumps(item))  # as published: the block's JSON
    mime = match.group(1) or None
    return _media(_modality_of(mime), None, data[match.end() :], mime)


def _langchain_media(kind: str, item: Mapping[str, Any]) -> ContentPart:
    modality = _MEDIA_TYPES[kind]
    url: Any = None
    if kind == "input_audio":
        inner = item.get("input_audio")
        if isinstance(inner, Mapping):
            data = inner.get("data")
            if isinstance(data, str) and data and not data.startswith(("http://", "https://")):
                return _media("audio", None, data, f"audio/{inner.get('format', 'wav')}")
            url = inner.get("url")
        else:
            url = item.get("url")
    elif kind == "input_image":  # OpenAI Responses: "image_url" is the URL itself
        inner = item.get("input_image")
        url = (
            item.get("url")
            or item.get("image_url")
            or (inner.get("url") if isinstance(inner, Mapping) else None)
        )
    else:  # {"type": "image_url", "image_url": {"url": ...}} (OpenAI Chat also takes the URL as a string)
        inner = item.get(kind) or item.get("image_url")
        url = inner.get("url") if isinstance(inner, Mapping) else inner
    if not isinstance(url, str) or not url:
        return TextPart("")  # as published: a media block without a source is an empty text
    return _media(modality, url, None, None)


def _media(modality: str, url: Any, data: Any, mime: Any) -> TextPart:
    """A text part naming inline media (see the module docstring); a data URI is read as base64."""
    if isinstance(url, str):
        match = _DATA_URI.match(url)
        if match is None:
            return TextPart(f"[{modality}: {url}]")
        mime, data = match.group(1) or mime, url[match.end() :]
    size = len(data) if isinstance(data, str) else 0
    kind = f"{mime}, " if isinstance(mime, str) and mime else ""
    return TextPart(f"[{modality}: {kind}{size} base64 characters]")


def _modality_of(mime: str | None) -> str:
    return _MIME_MODALITY.get((mime or "").split("/")[0], "document")


def _enum_value(value: Any) -> Any:
    inner = getattr(value, "value", None)  # galileo_core's ContentModality is a str enum
    return inner if isinstance(inner, str) else value


def _is_uuid4(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 4
    except ValueError:
        return False


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except Exception:
        return str(value)
