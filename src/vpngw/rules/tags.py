"""Tags: the public API's limits on keys, values and how many a resource may carry.

A key is 1-128 characters, a value 0-128; neither may start with ``aliyun`` or ``acs:``
(any case: those are the provider's own tags) nor contain ``http://`` or ``https://``.
Keys of one resource are unique; a resource carries at most 20 tags.
"""

from __future__ import annotations

from typing import Any

from vpngw.errors import BadRequest, invalid_parameter

MAX_TAGS_PER_RESOURCE = 20
MAX_KEY = 128
MAX_VALUE = 128
RESERVED_PREFIXES = ("aliyun", "acs:")
FORBIDDEN_PARTS = ("http://", "https://")

TagFilter = tuple[str, str | None]


def _why_bad(text: str, low: int, high: int) -> str | None:
    if not low <= len(text) <= high:
        return f"must be {low}-{high} characters"
    if text.lower().startswith(RESERVED_PREFIXES):
        return "must not start with 'aliyun' or 'acs:'"
    if any(part in text.lower() for part in FORBIDDEN_PARTS):
        return "must not contain 'http://' or 'https://'"
    return None


def check_key(param: str, key: str) -> str:
    why = _why_bad(key, 1, MAX_KEY)
    if why is not None:
        raise BadRequest("InvalidTagKey.Malformed", f'The tag key of "{param}" is not valid: it {why}.')
    return key


def check_value(param: str, value: str) -> str:
    why = _why_bad(value, 0, MAX_VALUE)
    if why is not None:
        raise BadRequest("InvalidTagValue.Malformed", f'The tag value of "{param}" is not valid: it {why}.')
    return value


def _members(param: str, item: Any, index: int) -> dict[str, str]:
    if (
        not isinstance(item, dict)
        or not set(item) <= {"Key", "Value"}
        or not all(isinstance(v, str) for v in item.values())
    ):
        raise invalid_parameter(param, f"give {param}.N.Key and {param}.N.Value (item {index})")
    return item


def parse_filters(param: str, items: Any) -> list[TagFilter]:
    """``Tag.N.Key`` (with ``Tag.N.Value`` or without: any value) as filters, at most 20."""
    if not isinstance(items, list):
        raise invalid_parameter(param, f"give it as {param}.N.Key / {param}.N.Value")
    if len(items) > MAX_TAGS_PER_RESOURCE:
        raise invalid_parameter(param, f"at most {MAX_TAGS_PER_RESOURCE} tags")
    found: list[TagFilter] = []
    for index, item in enumerate(items, 1):
        members = _members(param, item, index)
        if "Key" not in members:
            raise BadRequest("InvalidTagKey.Malformed", f'"{param}.{index}.Key" is missing.')
        value = members.get("Value")
        found.append((check_key(param, members["Key"]), None if value is None else check_value(param, value)))
    return found


def parse_tags(param: str, items: Any) -> list[tuple[str, str]]:
    """``Tags.N.Key`` / ``Tags.N.Value`` to set (a missing value is the empty value): unique
    keys, at most 20."""
    tags = [(key, value or "") for key, value in parse_filters(param, items)]
    keys = [key for key, _ in tags]
    if len(set(keys)) != len(keys):
        raise BadRequest("InvalidTagKey.Duplicated", f'"{param}" gives one tag key twice.')
    return tags


def check_room(resource_id: str, keys_after: int) -> None:
    if keys_after > MAX_TAGS_PER_RESOURCE:
        raise BadRequest(
            "QuotaExceeded.TagsPerResource",
            f"The resource {resource_id} would carry {keys_after} tags; at most {MAX_TAGS_PER_RESOURCE} are allowed.",
        )
