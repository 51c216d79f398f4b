"""Tool definitions of a chat request, in either provider's shape, read one way for every family
and provider (offline tool overheads and online request bodies alike)."""

from __future__ import annotations

from .errors import ExtractError


def tool_spec(tool: dict, where: str = "tools") -> tuple[str, str, dict]:
    """(name, description, JSON schema) of a tool in Anthropic's shape ({name, description,
    input_schema}) or OpenAI's ({type: function, function: {name, description, parameters}})."""
    fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    name = fn.get("name")
    if not isinstance(name, str):
        raise ExtractError(f"{where}: a tool definition has no 'name'")
    schema = fn.get("input_schema", fn.get("parameters", {}))
    return name, fn.get("description") or "", schema if isinstance(schema, dict) else {}
