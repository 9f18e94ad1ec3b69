"""The ``messages`` and ``tools`` of a chat-completions request, checked and normalised.

Messages come out as the upstream and the store take them: text contents as one string, an
assistant's ``tool_calls`` kept, a tool result with its ``tool_call_id``. A problem raises
:class:`~hermes_core.plugins.http_params.ParamProblem` naming the field and saying where.
"""

from __future__ import annotations

from typing import Any

from hermes_core.plugins.http_params import ParamProblem
from hermes_core.tools import TOOL_NAME_PATTERN

#: Message roles of the chat-completions API.
ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def _problem(message: str, param: str = "messages") -> ParamProblem:
    return ParamProblem(message, param)


def text_of(content: Any, where: str) -> str:
    """The text of a message: a string, or the ``text`` parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _problem(f"{where}.content: only text parts are supported, got {kind!r}")
            if not isinstance(part.get("text"), str):
                raise _problem(f"{where}.content: a text part needs `text`")
            texts.append(part["text"])
        return "\n".join(texts)
    raise _problem(f"{where}.content must be a string or a list of text parts")


def _tool_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(calls, list) or not calls:
        raise _problem(f"{where}.tool_calls must be a non-empty list")
    checked = []
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not (
            isinstance(call, dict)
            and isinstance(call.get("id"), str)
            and isinstance(function, dict)
            and isinstance(function.get("name"), str)
            and isinstance(function.get("arguments", ""), str)
        ):
            raise _problem(
                f"{where}.tool_calls[{index}] must be {{id, type: function, "
                "function: {name, arguments}}"
            )
        name, arguments = function["name"], function.get("arguments", "")
        checked.append(
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        )
    return checked


def message(item: Any, index: int) -> dict[str, Any]:
    """One entry of ``messages``, checked and normalised."""
    where = f"messages[{index}]"
    if not isinstance(item, dict) or not isinstance(item.get("role"), str):
        raise _problem(f"{where} must be an object with a string `role`")
    role = item["role"]
    if role not in ROLES:
        raise _problem(f"{where}.role must be one of {', '.join(ROLES)}, got {role[:40]!r}")
    if role == "assistant":
        content = item.get("content")
        normal: dict[str, Any] = {
            "role": role,
            "content": None if content is None else text_of(content, where),
        }
        if item.get("tool_calls") is not None:
            normal["tool_calls"] = _tool_calls(item["tool_calls"], where)
        elif content is None:
            raise _problem(f"{where}: an assistant message needs `content` or `tool_calls`")
        return normal
    normal = {"role": role, "content": text_of(item.get("content"), where)}
    if role == "tool":
        if not isinstance(item.get("tool_call_id"), str):
            raise _problem(f"{where}: a tool message needs the string `tool_call_id` it answers")
        normal["tool_call_id"] = item["tool_call_id"]
    if role == "function" and isinstance(item.get("name"), str):
        normal["name"] = item["name"]
    return normal


def conversation(messages: Any) -> list[dict[str, Any]]:
    """Every message of ``messages``, checked and normalised."""
    if not isinstance(messages, list) or not messages:
        raise _problem("`messages` must be a non-empty list")
    return [message(item, index) for index, item in enumerate(messages)]


def trailing_tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``role: "tool"`` messages that end the conversation: a run's tool results."""
    start = len(messages)
    while start > 0 and messages[start - 1]["role"] == "tool":
        start -= 1
    return messages[start:]


def client_tools(tools: Any) -> list[dict[str, Any]]:
    """The request's ``tools``: function tools only, each name once."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _problem("`tools` must be a list of function tools", "tools")
    checked: dict[str, dict[str, Any]] = {}
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not (
            isinstance(tool, dict) and tool.get("type") == "function" and isinstance(function, dict)
        ):
            raise _problem(
                f"tools[{index}] must be {{type: function, function: {{name}}}}", "tools"
            )
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME_PATTERN.match(name):
            raise _problem(
                f"tools[{index}].function.name must match {TOOL_NAME_PATTERN.pattern}, "
                f"got {name!r}"[:200],
                "tools",
            )
        if name in checked:
            raise _problem(f"tools[{index}]: the tool {name!r} is declared twice", "tools")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _problem(f"tools[{index}].function.parameters must be an object", "tools")
        checked[name] = {"type": "function", "function": dict(function)}
    return list(checked.values())
