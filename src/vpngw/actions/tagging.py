"""Tags as the resource actions take and show them: ``Tags.N.Key/Value`` on a create,
``Tag.N.Key/Value`` filters on a listing, ``{"Tag": [{"Key", "Value"}]}`` in a view.
The tag actions themselves (TagResources and its kin) are in ``actions.tags``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationInfo

from vpngw.actions.framework import Response, wire_name
from vpngw.rules.tags import TagFilter, parse_filters, parse_tags


def _listed(value: Any) -> Any:
    """A JSON body's array arrives as its compact JSON text (docs/api.md, dialects)."""
    if isinstance(value, str) and value.startswith("["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _tags(value: Any, info: ValidationInfo) -> list[tuple[str, str]]:
    return parse_tags(wire_name(info), _listed(value))


def _filters(value: Any, info: ValidationInfo) -> list[TagFilter]:
    return parse_filters(wire_name(info), _listed(value))


#: Tags to set (``Tags.N.Key`` / ``Tags.N.Value``; CreateVpc spells it ``Tag.N``).
TagsToSet = Annotated[list[tuple[str, str]], BeforeValidator(_tags)]
#: Tag filters of a listing (``Tag.N.Key`` with or without ``Tag.N.Value``).
TagFilters = Annotated[list[tuple[str, str | None]], BeforeValidator(_filters)]


class TagList(Response):
    tag: list[dict[str, str]] = []


def tag_list(pairs: Sequence[tuple[str, str]]) -> TagList:
    return TagList(tag=[{"Key": key, "Value": value} for key, value in pairs])
