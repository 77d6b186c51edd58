"""Content negotiation: which representation a client's Accept header asks for.

JSON, YAML, server-side tables (``as=Table``), metadata only
(``as=PartialObjectMetadata[List]``) or aggregated discovery (``as=APIGroupDiscoveryList``),
as kube-apiserver's negotiation picks them; protobuf only is 406.
"""

from __future__ import annotations

from dataclasses import dataclass

from arges.apiserver.errors import NotAcceptable

DISCOVERY_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
DISCOVERY_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
JSON = "application/json"
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
"""What kube-openapi answers to ``...spec.v2@v1.0+protobuf`` (an '@' is no valid MIME token)."""


@dataclass(frozen=True)
class Negotiated:
    """What the client's Accept header asks for: ``form`` is json, yaml, table, partial or
    discovery; ``media`` the exact media type to answer with."""

    form: str
    media: str
    discovery_version: str = ""


def negotiate(accept: str) -> Negotiated:
    """Pick the first acceptable representation in the client's Accept header.

    Raises:
        NotAcceptable: when nothing offered can be served (e.g. protobuf only).
    """
    for item in (accept or "*/*").split(","):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        params.pop("q", None)
        as_ = params.get("as")
        if media in (JSON, "*/*", "application/*") and not as_:
            return Negotiated("json", JSON)
        if media in ("application/yaml", "application/x-yaml") and not as_:
            return Negotiated("yaml", "application/yaml")
        group = params.get("g") if media == JSON else None
        if group == "meta.k8s.io":
            if as_ == "Table" and params.get("v") in ("v1", "v1beta1"):
                return Negotiated("table", JSON)
            if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                return Negotiated("partial", JSON)
        if (
            group == "apidiscovery.k8s.io"
            and as_ == "APIGroupDiscoveryList"
            and params.get("v") in ("v2", "v2beta1")
        ):
            return Negotiated(
                "discovery",
                DISCOVERY_V2 if params["v"] == "v2" else DISCOVERY_V2BETA1,
                f"apidiscovery.k8s.io/{params['v']}",
            )
    raise NotAcceptable(
        "only the following media types are accepted: application/json, application/yaml, "
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    )
