"""iPXE scripts: the chain script every firmware path ends in, and what ``/ipxe`` answers.

``/boot.ipxe`` tries each NIC in turn: DHCP on it, then chain
``/ipxe?uuid=${uuid}&mac=${netN/mac:hexhyp}&arch=${buildarch}&platform=${platform}``; when
no NIC gets an answer it waits and starts over (so a server whose Environment is not ready
yet keeps trying instead of falling through to a stale disk). It configures IPv4 only
(``ifconf -c dhcp``, plain ``dhcp`` where iPXE has no ``ifconf``): iPXE's ``dhcp`` also
waits for IPv6 router advertisements, which costs 16 s per attempt on a network that sends
none (measured in the lab).

``/ipxe`` renders a :class:`BootAnswer` (a :class:`~arges.metal.boot.BootDecision` and the
credential minted for the boot):

- environment: ``kernel`` and ``initrd`` from ``/env/<name>/``, the Environment's arguments,
  plus for the agent ``arges.url=``, ``arges.mac=`` and ``arges.token=<credential>``, and
  for a target Environment ``talos.config=<arges>/configdata?uuid=&token=<credential>``
  (Talos fills in the empty ``uuid=`` and keeps the other parameters), each unless the
  Environment already sets it (an Environment's own ``talos.config=`` gets no credential:
  Arges' ``/configdata`` then refuses it);
- disk: ``exit`` (ipxe-exit), HTTP 404 (http-404), or ``sanboot`` of the first disk;
- not ready: HTTP 412 with the reason;
- refused (the requester is not plausibly that server, see :mod:`arges.access.guard`): 403,
  saying nothing more.

The credential is in the script only, never in a log line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from arges.api.environment import Environment
from arges.metal.boot import BootDecision

MAC_HEXHYP = re.compile(r"^[0-9a-fA-F]{2}(-[0-9a-fA-F]{2}){5}$")


@dataclass(frozen=True)
class BootAnswer:
    """What ``/ipxe`` answers: the decision, its Environment, the credential minted for the
    boot ("" when none), and why the requester was refused ("" when it was not)."""

    decision: BootDecision
    environment: Environment | None
    credential: str = ""
    refused: str = ""


@dataclass(frozen=True)
class Script:
    """An HTTP answer: status and text (an iPXE script, or a reason)."""

    status: int
    body: str


def chain_script(base_url: str) -> str:
    """``/boot.ipxe`` (see the module docstring)."""
    query = "uuid=${uuid}&mac=${net${idx}/mac:hexhyp}&arch=${buildarch}&platform=${platform}"
    configure = "ifconf -c dhcp net${idx} || dhcp net${idx}"
    return f"""#!ipxe
# Arges: ask which environment to boot, trying each network interface in turn.
set idx:int32 0
:nic
isset ${{net${{idx}}/mac}} || goto retry
echo Arges: net${{idx}} (${{net${{idx}}/mac}}) asking {base_url}
{configure} && chain --replace --autofree {base_url}/ipxe?{query} ||
inc idx
goto nic
:retry
echo Arges: no interface got a boot script; trying again in 10 seconds
sleep 10
set idx:int32 0
goto nic
"""


def mac_from_query(value: str) -> str:
    """``52-54-00-12-34-56`` (iPXE's hexhyp) as ``52:54:00:12:34:56``; "" when malformed."""
    return value.replace("-", ":").lower() if MAC_HEXHYP.match(value) else ""


def _has(args: list[str], key: str) -> bool:
    return any(a == key or a.startswith(f"{key}=") for a in args)


def kernel_args(
    env: Environment, *, target: bool, base_url: str, mac: str, credential: str
) -> tuple[list[str], str]:
    """The kernel command line and the initrd's name (``initrd=`` tells an EFI-stub kernel
    which file iPXE handed it)."""
    args = list(env.spec.kernel.args or [])
    initrd = next((a.split("=", 1)[1] for a in args if a.startswith("initrd=")), "")
    if not initrd:
        initrd = "initrd"
        args.append("initrd=initrd")
    if target:
        if not _has(args, "talos.config"):
            args.append(f"talos.config={base_url}/configdata?uuid=&token={credential}")
    else:
        if not _has(args, "arges.url"):
            args.append(f"arges.url={base_url}")
        if mac and not _has(args, "arges.mac"):
            args.append(f"arges.mac={mac}")
        args = [a for a in args if not a.startswith("arges.token=")]
        args.append(f"arges.token={credential}")
    return args, initrd


def render(answer: BootAnswer, *, base_url: str, mac: str) -> Script:
    """The ``/ipxe`` answer (see the module docstring)."""
    decision, env = answer.decision, answer.environment
    if answer.refused:
        return Script(403, "forbidden\n")
    if decision.kind == "not-ready":
        return Script(412, f"{decision.reason}\n")
    if decision.kind == "disk":
        if decision.disk_method == "http-404":
            return Script(404, "boot from disk\n")
        if decision.disk_method == "ipxe-sanboot":
            return Script(200, "#!ipxe\nsanboot --no-describe --drive 0x80\n")
        return Script(200, "#!ipxe\nexit\n")
    assert env is not None and decision.environment is not None
    args, initrd = kernel_args(
        env, target=decision.target, base_url=base_url, mac=mac, credential=answer.credential
    )
    root = f"{base_url}/env/{decision.environment}"
    return Script(
        200,
        "#!ipxe\n"
        f"# Arges: {decision.reason}\n"
        f"kernel {root}/kernel {' '.join(args)}\n"
        f"initrd --name {initrd} {root}/initrd\n"
        "boot\n",
    )
