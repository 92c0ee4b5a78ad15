"""The chat message value types: :class:`Message`, its roles and tool calls (re-exported by
:mod:`galileo._coerce` and :mod:`galileo.schema`; the coercion of user values into them lives in
:mod:`galileo._coerce`)."""

from __future__ import annotations

import enum
from typing import Any, Final

import attrs

from galileo._content_blocks import ContentPart

__all__ = ["MESSAGE_ROLES", "Message", "MessageRole", "ToolCall", "ToolCallFunction", "role_value"]

#: The schema's MessageRole enum.
MESSAGE_ROLES: Final = ("agent", "assistant", "developer", "function", "system", "tool", "user")


class MessageRole(str, enum.Enum):
    """The roles a :class:`Message` may have (the published ``MessageRole``); plain strings work as well."""

    agent = "agent"
    assistant = "assistant"
    developer = "developer"
    function = "function"
    system = "system"
    tool = "tool"
    user = "user"

    def __str__(self) -> str:
        return self.value


def role_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


@attrs.frozen(kw_only=True)
class ToolCallFunction:
    """The function an LLM asked to call, with its arguments as a JSON string."""

    name: str
    arguments: str

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


@attrs.frozen(kw_only=True)
class ToolCall:
    """One tool call in an assistant message."""

    id: str
    function: ToolCallFunction

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "function": self.function.to_wire()}


@attrs.frozen(kw_only=True)
class Message:
    """A chat message. ``content`` is text or content parts (multimodal); ``None`` (a message that only calls
    tools) is sent as ``""``: the schema requires a string or a list of parts."""

    content: str | list[ContentPart] | None
    role: str = attrs.field(
        default="user", converter=role_value, validator=attrs.validators.in_(MESSAGE_ROLES)
    )
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None

    def to_wire(self) -> dict[str, Any]:
        calls = self.tool_calls
        content: Any = self.content
        if type(content) is not str:
            content = "" if content is None else [part.to_wire() for part in content]
        return {
            "content": content,
            "role": self.role,
            "tool_call_id": self.tool_call_id,
            "tool_calls": None if calls is None else [call.to_wire() for call in calls],
        }
