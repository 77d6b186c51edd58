"""The real Cluster API stack as processes against a Kubernetes API (Arges' embedded one).

    scripts/capi-stack up --kubeconfig FILE [--state-dir DIR]
    scripts/capi-stack down [--state-dir DIR]

``up`` installs (once, cached by version), configures and starts Cluster API core, the Talos
bootstrap provider (CABPT) and the Talos control-plane provider (CACPPT) against the API of
FILE, and says what it started and where the logs are; ``down`` stops them and removes the
webhook configurations that pointed at them.

- **Versions** (:data:`STACK`): CAPI v1.10.10, CABPT v0.6.12, CACPPT v0.5.10. The Talos
  providers' last releases are built against Cluster API v1.10 and implement the v1beta1
  contract, so the whole stack speaks one API version (v1beta1, no conversions between served
  versions); Arges' CRDs are labelled for contracts v1beta1 and v1beta2.
- **Install**: binaries under ``$XDG_CACHE_HOME/arges/capi-stack/<versions>/bin``. Cluster API
  core and clusterctl with ``go install MODULE@VERSION``. The Talos providers' go.mod files
  carry a ``replace`` directive, which ``go install`` refuses for a module named that way, so
  they are built with ``go build`` from a throwaway module in the cache that requires the
  exact version and repeats that directive (by module name: no source is copied).
- **CRDs and webhooks** come from the same modules (the module cache holds each release's
  ``config/``), rendered by ``kubectl kustomize`` as their releases are, with one change:
  the conversion and admission webhooks' ``clientConfig`` points at the manager's own port on
  127.0.0.1 (there are no Services without a cluster network) with a CA generated here. RBAC
  is not applied: the embedded API server has one administrator and no authorizer, and the
  managers use FILE's credentials.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Component:
    """One manager of the stack."""

    name: str
    module: str
    version: str
    package: str
    """The main package (the module itself, or a package in it)."""
    replaces: tuple[str, ...] = ()
    """The module's own ``replace`` directives (then it is built, not ``go install``ed)."""
    crds: str = "config/crd"
    webhooks: str = "config/webhook"


CORE = Component("capi", "sigs.k8s.io/cluster-api", "v1.10.10", "sigs.k8s.io/cluster-api")
CABPT = Component(
    "cabpt",
    "github.com/siderolabs/cluster-api-bootstrap-provider-talos",
    "v0.6.12",
    "github.com/siderolabs/cluster-api-bootstrap-provider-talos",
    replaces=("github.com/google/cel-go => github.com/google/cel-go v0.22.0",),
)
CACPPT = Component(
    "cacppt",
    "github.com/siderolabs/cluster-api-control-plane-provider-talos",
    "v0.5.10",
    "github.com/siderolabs/cluster-api-control-plane-provider-talos",
    replaces=("github.com/google/cel-go => github.com/google/cel-go v0.22.0",),
)
STACK = (CORE, CABPT, CACPPT)
CLUSTERCTL = "sigs.k8s.io/cluster-api/cmd/clusterctl"


class StackError(Exception):
    """Something the stack needs is missing or failed; the message says what to do."""


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = "-".join(f"{c.name}-{c.version}" for c in STACK)
    return base / "arges" / "capi-stack" / key


def _run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise StackError(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def go() -> str:
    found = shutil.which("go")
    if found is None:
        raise StackError("no Go toolchain on PATH: the Cluster API stack is built with it")
    return found


def binary(component: Component) -> Path:
    return cache_dir() / "bin" / f"{component.name}-manager"


def clusterctl() -> Path:
    return cache_dir() / "bin" / "clusterctl"


def install() -> None:
    """Build every binary that is not in the cache yet."""
    bin_dir = cache_dir() / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    gobin = {"GOBIN": str(bin_dir)}
    for component in STACK:
        target = binary(component)
        if target.exists():
            continue
        say(f"building {component.module}@{component.version} (once; cached in {bin_dir})")
        if not component.replaces:
            _run([go(), "install", f"{component.package}@{component.version}"], env=gobin)
            built = bin_dir / component.package.rsplit("/", 1)[1]
            built.rename(target)
            continue
        work = cache_dir() / "build" / component.name
        work.mkdir(parents=True, exist_ok=True)
        lines = [f"module arges.dev/capi-stack/{component.name}", "", "go 1.24", ""]
        lines += [f"replace {r}" for r in component.replaces]
        (work / "go.mod").write_text("\n".join(lines) + "\n")
        _run([go(), "get", f"{component.module}@{component.version}"], cwd=work)
        _run([go(), "build", "-o", str(target), component.package], cwd=work)
    if not clusterctl().exists():
        say(f"building clusterctl {CORE.version}")
        _run([go(), "install", f"{CLUSTERCTL}@{CORE.version}"], env=gobin)


def module_dir(component: Component) -> Path:
    """The module's directory in the module cache (downloaded if needed)."""
    out = _run([go(), "mod", "download", "-json", f"{component.module}@{component.version}"])
    return Path(json.loads(out)["Dir"])


def kustomize(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    text = _run([kubectl, "kustomize", str(directory)])
    return [d for d in yaml.safe_load_all(text) if d]


@dataclass(frozen=True)
class Ports:
    """A manager's loopback ports: webhook server, health probes, diagnostics."""

    webhook: int
    health: int
    diagnostics: int


def free_ports() -> Ports:
    """Three ports free on 127.0.0.1 now (the managers bind them moments later)."""
    socks = [socket.socket() for _ in range(3)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        webhook, health, diagnostics = (int(s.getsockname()[1]) for s in socks)
    finally:
        for sock in socks:
            sock.close()
    return Ports(webhook, health, diagnostics)


def certificates(directory: Path) -> bytes:
    """A CA and a serving certificate for 127.0.0.1 (``tls.crt``/``tls.key`` in
    ``directory``, as controller-runtime's webhook server reads them); returns the CA PEM."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arges capi-stack webhooks")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    (directory / "ca.crt").write_bytes(ca_pem)
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / "tls.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_pem


def _point_at(client: dict[str, Any], port: int, ca: bytes) -> dict[str, Any]:
    path = (client.get("service") or {}).get("path") or "/"
    return {"url": f"https://127.0.0.1:{port}{path}", "caBundle": base64.b64encode(ca).decode()}


def manifests(kubectl: str, component: Component, port: int, ca: bytes) -> list[dict[str, Any]]:
    """The component's CRDs and webhook configurations, pointed at 127.0.0.1:``port``."""
    root = module_dir(component)
    docs = kustomize(kubectl, root / component.crds)
    webhooks = root / component.webhooks / "manifests.yaml"
    docs += [d for d in yaml.safe_load_all(webhooks.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "CustomResourceDefinition":
            conversion = (doc["spec"].get("conversion") or {}).get("webhook")
            if conversion:
                conversion["clientConfig"] = _point_at(conversion["clientConfig"], port, ca)
            annotations = doc["metadata"].get("annotations") or {}
            annotations.pop("cert-manager.io/inject-ca-from", None)
        elif doc["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            doc["metadata"]["name"] = f"arges-capi-stack-{component.name}-{doc['kind'].lower()}"
            for hook in doc.get("webhooks") or []:
                hook["clientConfig"] = _point_at(hook["clientConfig"], port, ca)
    return docs


def say(line: str) -> None:
    print(line, flush=True)


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def up(kubeconfig: Path, state: Path, kubectl: str, *, wait: float = 180.0) -> None:
    """Install, configure and start the stack against ``kubeconfig``'s API."""
    if (state / "pids.json").exists():
        raise StackError(f"the stack already runs from {state}: `scripts/capi-stack down` first")
    install()
    state.mkdir(parents=True, exist_ok=True)
    ca = certificates(state / "certs")
    chosen = [free_ports() for _ in STACK]
    documents: list[dict[str, Any]] = []
    for component, p in zip(STACK, chosen, strict=True):
        documents += manifests(kubectl, component, p.webhook, ca)
    rendered = state / "manifests.yaml"
    rendered.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    _run([kubectl, "--kubeconfig", str(kubeconfig), "apply", "--server-side", "-f", str(rendered)])
    _run(
        [
            *(kubectl, "--kubeconfig", str(kubeconfig), "wait"),
            *("--for=condition=Established", "--timeout=60s", "crd", "--all"),
        ]
    )
    pids: dict[str, int] = {}
    for component, p in zip(STACK, chosen, strict=True):
        log = state / f"{component.name}.log"
        argv = [
            str(binary(component)),
            f"--kubeconfig={kubeconfig}",
            f"--webhook-port={p.webhook}",
            f"--webhook-cert-dir={state / 'certs'}",
            f"--health-addr=127.0.0.1:{p.health}",
            f"--diagnostics-address=127.0.0.1:{p.diagnostics}",
            "--insecure-diagnostics",
        ]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        pids[component.name] = proc.pid
        say(f"started {component.module}@{component.version} (pid {proc.pid}, log {log})")
    (state / "pids.json").write_text(json.dumps(pids))
    deadline = time.monotonic() + wait
    for component, p in zip(STACK, chosen, strict=True):
        while not _answers(p.webhook):
            if time.monotonic() > deadline:
                raise StackError(
                    f"{component.name} did not open its webhook port; see {state}/"
                    f"{component.name}.log"
                )
            time.sleep(0.5)
    say(f"the Cluster API stack is up against {kubeconfig}; `scripts/capi-stack down` stops it")


def down(state: Path, kubectl: str, kubeconfig: Path | None = None) -> None:
    """Stop the managers started from ``state`` and remove their webhook configurations."""
    pids_file = state / "pids.json"
    if not pids_file.exists():
        say(f"no stack runs from {state}")
        return
    for name, pid in json.loads(pids_file.read_text()).items():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        say(f"stopped {name} (pid {pid})")
    pids_file.unlink()
    if kubeconfig is not None:
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            names = [f"arges-capi-stack-{c.name}-{kind}" for c in STACK]
            with contextlib.suppress(StackError):
                _run(
                    [
                        *(kubectl, "--kubeconfig", str(kubeconfig), "delete", kind),
                        *names,
                        "--ignore-not-found",
                    ]
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/capi-stack", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "install"])
    parser.add_argument("--kubeconfig", type=Path, help="the API to run against (up, down)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".capi-stack"),
        help="certificates, rendered manifests, logs and pids (default ./.capi-stack)",
    )
    args = parser.parse_args(argv)
    kubectl = shutil.which("kubectl")
    try:
        if kubectl is None:
            raise StackError("kubectl is not on PATH")
        if args.command == "install":
            install()
        elif args.command == "up":
            if args.kubeconfig is None:
                raise StackError("up needs --kubeconfig")
            up(args.kubeconfig.resolve(), args.state_dir.resolve(), kubectl)
        else:
            kubeconfig = args.kubeconfig.resolve() if args.kubeconfig else None
            down(args.state_dir.resolve(), kubectl, kubeconfig)
    except StackError as exc:
        print(f"capi-stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
