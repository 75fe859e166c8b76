"""The error codes docs/errors.md documents, as a closed set for metric labels.

A code a client can shape (``InvalidParameter.<Name>`` names whatever parameter it sent)
must never become a new label value: ``metrics`` keeps a code only when it is listed here,
or fills one of the templates with a parameter name an action declares (or a key of a
tunnel-config parameter). tests/hardening/test_metric_labels.py checks this list against
docs/errors.md: a code added to one must be added to the other.
"""

from __future__ import annotations

from vpngw.rules.tunnel_config import HEALTH_CHECK_KEYS, IKE_KEYS, IPSEC_KEYS

DOCUMENTED = frozenset(
    {
        "DependencyViolation.VpnConnection",
        "DryRunOperation",
        "DependencyViolation.VpnGateway",
        "Forbidden.Operator",
        "IdempotentParameterMismatch",
        "IllegalParam.LocalSubnet",
        "IllegalParam.RemoteSubnet",
        "IllegalParam.TimeRange",
        "IncompleteSignature",
        "InternalError",
        "InvalidAccessKeyId.Inactive",
        "InvalidAccessKeyId.NotFound",
        "InvalidAction.NotFound",
        "InvalidBody",
        "InvalidBody.Timeout",
        "InvalidBody.TooLarge",
        "InvalidCidrBlock.Malformed",
        "InvalidCustomerGatewayInstanceId.NotFound",
        "InvalidDescription",
        "InvalidIpAddress.AlreadyExist",
        "InvalidIpAddress.WrongFormat",
        "InvalidName",
        "InvalidParameter",
        "InvalidParameter.Asn",
        "InvalidParameter.AuthKey",
        "InvalidParameter.Bandwidth",
        "InvalidParameter.BgpConfig",
        "InvalidParameter.ClientToken",
        "InvalidParameter.From",
        "InvalidParameter.HealthCheckConfig",
        "InvalidParameter.IkeConfig",
        "InvalidParameter.IpsecConfig",
        "InvalidParameter.MinutePeriod",
        "InvalidParameter.PageNumber",
        "InvalidParameter.PageSize",
        "InvalidParameter.RegionId",
        "InvalidParameter.RouteEntryType",
        "InvalidParameter.SignatureNonce",
        "InvalidParameter.SignatureVersion",
        "InvalidParameter.To",
        "InvalidProduct.NotFound",
        "InvalidRegionId.NotFound",
        "InvalidSignatureMethod",
        "InvalidTimeStamp.Expired",
        "InvalidTimeStamp.Format",
        "InvalidVersion",
        "InvalidVpcId.NotFound",
        "InvalidVpnConnectionInstanceId.NotFound",
        "InvalidVpnGatewayInstanceId.NotFound",
        "MissingParameter.AccessKeyId",
        "MissingParameter.Action",
        "MissingParameter.FromOrMinutePeriod",
        "MissingParameter.ToOrMinutePeriod",
        "OperationUnsupported.Bgp",
        "OperationUnsupported.DestinationRouting",
        "OperationUnsupported.DhcpOptionsSetId",
        "OperationUnsupported.DisasterRecoveryVSwitchId",
        "OperationUnsupported.EnableDnsHostname",
        "OperationUnsupported.EnableIpv6",
        "OperationUnsupported.EnableSsl",
        "OperationUnsupported.EnableTunnelsBgp",
        "OperationUnsupported.ForceDelete",
        "OperationUnsupported.GatewayType",
        "OperationUnsupported.Ipv4CidrMask",
        "OperationUnsupported.Ipv4IpamPoolId",
        "OperationUnsupported.Ipv6CidrBlock",
        "OperationUnsupported.Ipv6CidrMask",
        "OperationUnsupported.Ipv6IpamPoolId",
        "OperationUnsupported.Ipv6Isp",
        "OperationUnsupported.RemoteCaCertificate",
        "OperationUnsupported.ResourceGroupId",
        "OperationUnsupported.Tag",
        "OperationUnsupported.Tags",
        "OperationUnsupported.TunnelOptionsSpecification",
        "OperationUnsupported.UserCidr",
        "OperationUnsupported.VpcOwnerId",
        "OperationUnsupported.VpnType",
        "Resource.QuotaFull",
        "ServiceUnavailable",
        "ServiceUnavailable.StorageFull",
        "SignatureDoesNotMatch",
        "SignatureNonceUsed",
        "Throttling.User",
        "UnsupportedHTTPMethod",
        "VpnConnection.SubnetConflict",
    }
)

# The documented templates: <Name> is a parameter name, <Key> a key of that JSON parameter.
TEMPLATES = (
    "MissingParameter.<Name>",
    "InvalidParameter.<Name>",
    "InvalidParameter.IkeConfig.<Key>",
    "InvalidParameter.IpsecConfig.<Key>",
    "InvalidParameter.HealthCheckConfig.<Key>",
)
PARAMETER_FAMILIES = ("MissingParameter", "InvalidParameter")
CONFIG_KEYS = {
    "IkeConfig": frozenset(key.name for key in IKE_KEYS),
    "IpsecConfig": frozenset(key.name for key in IPSEC_KEYS),
    "HealthCheckConfig": frozenset(key.name for key in HEALTH_CHECK_KEYS),
}
