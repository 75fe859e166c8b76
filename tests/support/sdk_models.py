"""The official Tea SDK's request models, walked: every public parameter of an action, named
as the SDK sends it on the wire (lists flattened, ``Tags.N.Key``).

A model is filled with one sample value per field (a list with one item, nested models
filled likewise) and flattened with the SDK's own ``Utils.query``, so the names are the
SDK's, not a re-implementation of its rules; ``.1.`` becomes ``.N.``.
"""

from __future__ import annotations

import inspect
import re
import typing
from typing import Any

from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_vpc20160428 import models as sdk_models


def _filled(cls: type[Any]) -> Any:
    hints = typing.get_type_hints(
        cls.__init__,
        globalns={"main_models": sdk_models, "List": typing.List, "Dict": typing.Dict, "Any": Any},  # noqa: UP006
    )
    names = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    return cls(**{name: _sample(hints.get(name)) for name in names})


def _sample(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        origin = typing.get_origin(hint)
    if origin is list:
        return [_sample(typing.get_args(hint)[0])]
    if origin is dict:
        return {"k": "v"}
    if inspect.isclass(hint) and hasattr(hint, "to_map"):
        return _filled(hint)
    if hint is bool:
        return True
    if hint in (int, float):
        return 1
    return "x"


def request_model(action: str) -> type[Any] | None:
    model: type[Any] | None = getattr(sdk_models, f"{action}Request", None)
    return model


def wire_names(action: str) -> list[str]:
    """The action's public request parameters as the SDK flattens them (``N`` for an index)."""
    model = request_model(action)
    assert model is not None, action
    flat = Utils.query(_filled(model).to_map())
    return sorted({re.sub(r"\.1(?=\.|$)", ".N", key) for key in flat})
