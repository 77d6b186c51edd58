"""The Kubernetes components of a machine config, in the order ``talosctl upgrade-k8s``
upgrades them.

``pkg/cluster/kubernetes/talos_managed.go`` (Talos v1.11) upgrades, on each control plane in
turn, ``kube-apiserver``, then ``kube-controller-manager``, then ``kube-scheduler`` (the
images ``cluster.apiServer.image``, ``cluster.controllerManager.image``,
``cluster.scheduler.image``), then ``kube-proxy`` (``cluster.proxy.image``, also on the
control planes, which render its manifest), and last the kubelet of every node, control
planes first (``machine.kubelet.image``). Each step reads the node's running config, changes
that one image, and applies it with ApplyConfiguration mode NO_REBOOT (``patch.go``).
A worker's config has no ``cluster.apiServer`` and so on: only its kubelet is upgraded.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal

from arges.talos.applymode import v1alpha1
from arges.talos.documents import decode, encode
from arges.talos.errors import InvalidInput

Component = Literal[
    "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet"
]
COMPONENTS: tuple[Component, ...] = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubelet",
)
PATHS: dict[Component, tuple[str, str]] = {
    "kube-apiserver": ("cluster", "apiServer"),
    "kube-controller-manager": ("cluster", "controllerManager"),
    "kube-scheduler": ("cluster", "scheduler"),
    "kube-proxy": ("cluster", "proxy"),
    "kubelet": ("machine", "kubelet"),
}


def image(config: str, component: Component) -> str | None:
    """The image ``component`` runs with under ``config`` (None: the config names none).

    Raises:
        InvalidInput: when ``config`` is not a YAML stream of mappings.
    """
    return images(config)[component]


_IMAGES: OrderedDict[bytes, Mapping[Component, str | None]] = OrderedDict()
_IMAGES_KEPT = 8192
"""How many configs' images :func:`images` remembers (a few hundred bytes each; a fleet of
2,000 members has two configs per member in play: applied and wanted)."""


def images(config: str) -> Mapping[Component, str | None]:
    """Every component's image under ``config`` (None where it names none), the config
    decoded once and the answer remembered by its SHA-256: the cluster controller asks for
    each member's images on every reconcile, and decoding a config takes milliseconds.

    Raises:
        InvalidInput: when ``config`` is not a YAML stream of mappings.
    """
    key = hashlib.sha256(config.encode()).digest()
    found = _IMAGES.get(key)
    if found is not None:
        _IMAGES.move_to_end(key)
        return found
    doc = v1alpha1(config) or {}
    found = {c: _image_in(doc, c) for c in COMPONENTS}
    _IMAGES[key] = found
    if len(_IMAGES) > _IMAGES_KEPT:
        _IMAGES.popitem(last=False)
    return found


def _image_in(doc: dict[str, Any], component: Component) -> str | None:
    section, key = PATHS[component]
    value = ((doc.get(section) or {}).get(key) or {}).get("image")
    return value if isinstance(value, str) else None


def with_image(config: str, component: Component, new: str) -> str:
    """``config`` with ``component``'s image set to ``new`` (its section created if needed),
    as ``upgrade-k8s`` patches a node's running config.

    Raises:
        InvalidInput: when ``config`` is not a YAML stream of mappings or has no ``v1alpha1``
            document.
    """
    docs = decode(config)
    section, key = PATHS[component]
    for doc in docs:
        if doc.get("version") == "v1alpha1" and "apiVersion" not in doc:
            part = doc.setdefault(section, {})
            part.setdefault(key, {})["image"] = new
            return encode(docs)
    raise InvalidInput("the machine config has no v1alpha1 document")


def tag(image_ref: str | None) -> str | None:
    """The tag of an image reference (``registry.k8s.io/kube-apiserver:v1.34.1`` ->
    ``v1.34.1``); None without one (a digest-only or untagged reference)."""
    if not image_ref:
        return None
    name = image_ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    return last.rsplit(":", 1)[1] or None
