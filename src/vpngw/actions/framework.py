"""What every action is made of: a parameter model, a handler and a response model.

Parameter models name their fields in snake_case; the wire names are their PascalCase
aliases (``vpn_gateway_id`` <-> ``VpnGatewayId``). Field types carry the rules
(``vpngw.rules``) as validators, so a model *is* the declaration of its parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationInfo,
)
from pydantic.alias_generators import to_pascal
from sqlalchemy.orm import Session

from vpngw.config import Settings
from vpngw.rules import names, values
from vpngw.sealing import Sealer

T = TypeVar("T")


class Params(BaseModel):
    """Request parameters. Unknown parameters (the common ones such as ``Format`` or
    ``SignatureNonce``) are ignored; known ones are validated."""

    model_config = ConfigDict(alias_generator=to_pascal, extra="ignore", frozen=True)


class Response(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, validate_by_name=True, validate_by_alias=True)


class RegionParams(Params):
    region_id: str


@dataclass(frozen=True)
class Context:
    """Who calls, where, and when: everything an action needs besides its parameters."""

    account_id: str
    request_id: str
    settings: Settings
    now_ms: int
    host: str
    sealer: Sealer


P = TypeVar("P", bound=Params)


@dataclass(frozen=True)
class Action(Generic[P]):
    name: str
    params: type[P]
    handler: Callable[[Context, Session, P], Response]
    writes: bool


def wire_name(info: ValidationInfo) -> str:
    # A field named after a Python keyword carries a trailing "_" (from_ <-> From).
    return to_pascal((info.field_name or "").rstrip("_"))


def _rule(check: Callable[[str, Any], T]) -> BeforeValidator:
    """A field validator that runs a rule with the parameter's wire name."""

    def run(value: Any, info: ValidationInfo) -> T:
        return check(wire_name(info), value)

    return BeforeValidator(run)


Bool = Annotated[bool, _rule(values.parse_bool)]
PageNumber = Annotated[int, _rule(lambda name, v: values.parse_int(name, v, 1, 1_000_000))]
PageSize = Annotated[int, _rule(lambda name, v: values.parse_int(name, v, 1, 50))]
ClientToken = Annotated[str, AfterValidator(values.check_client_token)]
Name = Annotated[str, AfterValidator(names.check_name)]
Description = Annotated[str, AfterValidator(names.check_description)]


def int_in(low: int, high: int) -> BeforeValidator:
    """A whole number in ``[low, high]`` (a JSON number or a decimal string)."""
    return _rule(lambda name, v: values.parse_int(name, v, low, high))


def choice(*allowed: str) -> BeforeValidator:
    return _rule(lambda name, v: values.check_choice(name, str(v), allowed))


class PageParams(RegionParams):
    """A listing: PageNumber from 1, PageSize 1–50 (default 10)."""

    page_number: PageNumber = 1
    page_size: PageSize = 10


class PageResponse(Response):
    total_count: int
    page_number: int
    page_size: int
