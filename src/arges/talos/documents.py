"""Machine-config YAML streams: Talos' style in, plain data out."""

from __future__ import annotations

from typing import Any

import yaml

from arges.talos.errors import InvalidInput


class _TalosDumper(yaml.SafeDumper):
    """YAML as Talos' yaml.v3 writes it: 4-space indent, list items indented under keys."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # yaml.v3 writes the empty string as "" (a worker's empty CA key, for one).
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style='"' if value == "" else None
    )


_TalosDumper.add_representer(str, _string)

_Loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)
"""PyYAML's safe loader on libyaml where PyYAML was built with it (the wheels are)."""

_Dumper: type[yaml.SafeDumper] | type[yaml.CSafeDumper] = getattr(
    yaml, "CSafeDumper", yaml.SafeDumper
)
"""PyYAML's safe dumper on libyaml, likewise."""


def load(text: str) -> Any:
    """One YAML document (``secrets.yaml``, a talosconfig), parsed by libyaml with PyYAML's
    safe constructors: what ``yaml.safe_load`` gives, about ten times faster.

    Raises:
        yaml.YAMLError: when ``text`` is not YAML.
    """
    return yaml.load(text, Loader=_Loader)


def dump(doc: Any) -> str:
    """``doc`` as ``secrets.yaml`` and talosconfigs are written (4-space indent, keys in
    their order), emitted by libyaml: ``yaml.safe_dump(doc, sort_keys=False, indent=4)``'s
    text, several times faster. Machine configs, whose lists yaml.v3 indents, are
    :func:`encode`'s."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, indent=4)


def encode(documents: list[dict[str, Any]]) -> str:
    """A YAML stream of ``documents`` (``---`` between them), in Talos' style."""
    return "---\n".join(
        yaml.dump(
            doc,
            Dumper=_TalosDumper,
            indent=4,
            sort_keys=False,
            width=1 << 30,
            allow_unicode=True,
        )
        for doc in documents
    )


def decode(text: str) -> list[dict[str, Any]]:
    """The documents of a machine-config YAML stream.

    Raises:
        InvalidInput: when it is not YAML or a document is not a mapping.
    """
    try:
        # libyaml's parser, with PyYAML's safe constructors: the same documents, about ten
        # times faster than the pure-Python one (a config is decoded per member, per render).
        docs = [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.YAMLError as exc:
        raise InvalidInput(f"machine config is not YAML: {exc}") from exc
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise InvalidInput("a machine config is one or more YAML mappings")
    return docs
