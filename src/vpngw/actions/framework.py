"""What every action is made of: a parameter model, a handler and a response model.

Parameter models name their fields in snake_case; the wire names are their PascalCase
aliases (``vpn_gateway_id`` <-> ``VpnGatewayId``). Field types carry the rules
(``vpngw.rules``) as validators, so a model *is* the declaration of its parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, ClassVar, Generic, TypeVar

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
from vpngw.store.direct import Tx

T = TypeVar("T")


GIVEN: Any = object()
"""A refusal's ``when`` for "whatever the value": the parameter is refused whenever it is given."""


@dataclass(frozen=True)
class Refused:
    """A public parameter vpngw does not do, refused with ``code`` before anything is written.

    ``when`` is ``GIVEN`` for a parameter the model does not declare (any value is refused;
    a list's name, e.g. ``TunnelOptionsSpecification``, covers every ``Name.N.*``), or the
    validated value of a declared field that asks for the missing feature (``EnableSsl``
    refused when ``True``; its "off" value is then accepted as a no-op)."""

    code: str
    why: str
    when: Any = GIVEN


#: The common parameters, ignored on every action (docs/api.md). Besides these, a parameter
#: the public API does not have is ignored too (as the public API does); every parameter of
#: the official SDK's request models is classified (tests/api/test_parameter_classes.py).
COMMON = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "AccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "SignatureType",
        "Timestamp",
        "SecurityToken",
        "OwnerId",
        "OwnerAccount",
        "ResourceOwnerId",
        "ResourceOwnerAccount",
        "regionId",
        "version",
    }
)


class Params(BaseModel):
    """Request parameters: each declared field is implemented unless ``NO_OP`` names it
    (accepted after validation, and nothing more: a billing field, a switch at "off");
    ``REFUSED`` names what is refused (docs/api.md's table is generated from these).
    Parameters in ``COMMON`` and parameters the public API does not have are ignored."""

    model_config = ConfigDict(alias_generator=to_pascal, extra="ignore", frozen=True)

    NO_OP: ClassVar[Mapping[str, str]] = {}
    REFUSED: ClassVar[Mapping[str, Refused]] = {}
    #: Wire names of fields sent as one flattened object, ``Name.Member[.Key]`` (ModifyTunnelAttribute's
    #: ``TunnelOptionsSpecification.TunnelIkeConfig.Psk``): dispatch gathers them into ``{"Member.Key": value}``.
    OBJECTS: ClassVar[frozenset[str]] = frozenset()


def unsupported(param: str, why: str, when: Any = GIVEN) -> Refused:
    """``OperationUnsupported.<param>``: the public API's feature is not in vpngw."""
    return Refused(f"OperationUnsupported.{param}", why, when)


NO_RESOURCE_GROUPS: Mapping[str, Refused] = {
    "ResourceGroupId": unsupported(
        "ResourceGroupId", "vpngw has no resource groups; every resource is in none (ResourceGroupId '')."
    )
}


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
    # The same handler when it also runs on a Direct transaction (the DBAPI cursor, no ORM:
    # vpngw.store.direct), which dispatch then prefers; it raises NeedsSession for a request
    # it cannot serve there.
    direct: Callable[[Context, Tx, P], Response] | None = None
    # A few short statements by key (or none): on SQLite the API runs it on the event loop
    # itself when no lock is taken (no hand-off to a worker thread; vpngw.api.app).
    inline: bool = False


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


DryRun = Annotated[bool, _rule(values.parse_bool)]
"""``DryRun=true``: every check runs, nothing is written, the answer is 400 ``DryRunOperation``
(the public API's; dispatch rolls the transaction back)."""


class PageParams(RegionParams):
    """A listing: PageNumber from 1, PageSize 1–50 (default 10)."""

    page_number: PageNumber = 1
    page_size: PageSize = 10


class PageResponse(Response):
    total_count: int
    page_number: int
    page_size: int


@cache
def list_fields(model: type[Params]) -> frozenset[str]:
    """The wire names of the model's list fields (sent flattened: ``Name.N`` or ``Name.N.Member``)."""
    return frozenset(
        field.alias or name for name, field in model.model_fields.items() if "list[" in str(field.annotation)
    )


def parameter_class(model: type[Params], wire: str) -> tuple[str, str] | None:
    """The class of a wire parameter for an action (docs/api.md): ``implemented``,
    ``no-op``, ``refused`` or ``ignored``, with why; None for a name the action does not know
    (ignored too, as the public API ignores unknown names, but no public name may be one)."""
    head = wire.split(".", 1)[0]
    refused = model.REFUSED.get(wire) or model.REFUSED.get(head)
    if refused is not None:
        shown = str(refused.when).lower() if isinstance(refused.when, bool) else str(refused.when)
        condition = "" if refused.when is GIVEN else f" when {shown}"
        return "refused", f"`{refused.code}`{condition}: {refused.why}"
    if wire in model.NO_OP:
        return "no-op", model.NO_OP[wire]
    aliases = {field.alias or name for name, field in model.model_fields.items()}
    if wire in aliases or (head in aliases and head != wire):
        return "implemented", ""
    if wire in COMMON:
        return "ignored", "a common parameter"
    return None
