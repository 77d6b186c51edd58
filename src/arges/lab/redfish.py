"""The lab's Redfish BMCs: sushy-tools' Redfish emulator driving a lab server's QEMU.

sushy-tools (the emulator OpenStack tests Ironic and sushy against) serves the Redfish
resources: service root, Systems, Managers, Chassis, ``ComputerSystem.Reset``, the boot
override, and VirtualMedia (``InsertMedia`` fetches the image from its URL, as a BMC does).
It reaches the machine through a *systems driver*; it ships drivers for libvirt, Nova, Ironic
and an in-memory fake. :class:`QemuSystems` is the lab's: its one system is a lab server's
:class:`~arges.lab.vm.VirtualMachine` (power on and off start and stop QEMU, a restart is a
new QEMU process, the boot override applies to the next start, the virtual CD is an ISO
attached at the next start).

Two things the emulator does not do, added here:

- **Sessions** (DSP0266 "Redfish session login"): :class:`Sessions`, a WSGI layer in front of
  the emulator, answers ``POST /redfish/v1/SessionService/Sessions`` with an ``X-Auth-Token``
  and a session ``Location``, accepts that token (and, unless ``basic=False``, HTTP Basic)
  on every other request, ends a session on ``DELETE``, and leaves the service root open,
  as the specification requires. It advertises the SessionService on the service root.
- **TLS**: the service listens on HTTPS with the lab's certificate (:mod:`arges.lab.tls`).

``python -m arges.lab.redfish LAB_DIR NAME`` runs the BMC of lab server ``NAME``: it reads the
lab's state and credentials files (the password never travels in argv), powers the server on
as a rack someone just switched on, then serves until SIGTERM, when it powers the server off.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import signal
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sushy_tools import error as fishy
from sushy_tools.emulator import main as emulator
from sushy_tools.emulator.resources.systems.base import AbstractSystemsDriver
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from arges.lab.state import load_credentials, load_state
from arges.lab.tls import TlsFiles, files
from arges.lab.vm import VirtualMachine

log = logging.getLogger(__name__)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

ROOT = "/redfish/v1"
SESSION_SERVICE = f"{ROOT}/SessionService"
SESSIONS = f"{SESSION_SERVICE}/Sessions"
OPEN_PATHS = ("", "/redfish", ROOT)
"""Served without authentication (DSP0266: the service root, and the version document)."""

BOOT_SOURCES = {"Pxe": "network", "Hdd": "disk", "Cd": "cd"}
"""Redfish boot override targets to the lab's boot devices."""


class QemuSystems(AbstractSystemsDriver):  # type: ignore[misc]
    """A sushy-tools systems driver whose one system is ``vm`` (see the module docstring).

    The system's identity is the lab server's SMBIOS UUID; its name is accepted too.
    """

    def __init__(self, vm: VirtualMachine) -> None:
        self.vm = vm
        self.machine = vm.machine

    @property
    def driver(self) -> str:
        return "<arges lab QEMU>"

    @property
    def systems(self) -> list[str]:
        return [self.machine.smbios.uuid]

    def uuid(self, identity: str) -> str:
        if identity not in (self.machine.smbios.uuid, self.machine.name):
            raise fishy.NotFound(f"no system {identity}")
        return self.machine.smbios.uuid

    def name(self, identity: str) -> str:
        self.uuid(identity)
        return self.machine.name

    def get_power_state(self, identity: str) -> str:
        self.uuid(identity)
        return "On" if self.vm.running else "Off"

    def set_power_state(self, identity: str, state: str) -> None:
        self.uuid(identity)
        log.info("%s: Redfish reset %s", self.machine.name, state)
        if state in ("On", "ForceOn"):
            self.vm.power_on()
        elif state == "ForceOff":
            self.vm.power_off()
        elif state == "GracefulShutdown":
            threading.Thread(target=self.vm.shutdown, daemon=True).start()
        elif state in ("GracefulRestart", "ForceRestart", "PowerCycle"):
            if self.vm.running:
                self.vm.reset()
        else:
            raise fishy.NotSupportedError(f"reset type {state} is not supported by the lab")

    def get_boot_device(self, identity: str) -> str:
        self.uuid(identity)
        device = self.vm.boot_device()
        return next(source for source, lab in BOOT_SOURCES.items() if lab == device)

    def set_boot_device(self, identity: str, boot_source: str) -> None:
        self.uuid(identity)
        if boot_source not in BOOT_SOURCES:
            raise fishy.BadRequest(f"the lab cannot boot from {boot_source}")
        # sushy-tools records no BootSourceOverrideEnabled (it reports Continuous); the lab
        # applies an override to the next start only, the one-time boot Arges asks for.
        self.vm.set_boot(BOOT_SOURCES[boot_source], persistent=False)  # type: ignore[arg-type]
        log.info("%s: next boot from %s", self.machine.name, boot_source)

    def get_boot_mode(self, identity: str) -> str:
        self.uuid(identity)
        return "UEFI" if self.machine.firmware == "uefi" else "Legacy"

    def set_boot_mode(self, identity: str, boot_mode: str) -> None:
        if boot_mode != self.get_boot_mode(identity):
            raise fishy.NotSupportedError(
                f"{self.machine.name} has {self.machine.firmware} firmware; it cannot switch"
            )

    def get_total_memory(self, identity: str) -> int:
        self.uuid(identity)
        return max(1, self.machine.memory_mib // 1024)

    def get_total_cpus(self, identity: str) -> int:
        self.uuid(identity)
        return self.machine.cpus

    def get_nics(self, identity: str) -> list[dict[str, str]]:
        self.uuid(identity)
        return [{"id": nic.mac, "mac": nic.mac} for nic in self.machine.nics]

    def get_boot_image(self, identity: str, device: str) -> tuple[str | None, bool, bool]:
        self.uuid(identity)
        media = self.vm.media if device == "Cd" else None
        return (str(media) if media else None, True, media is not None)

    def set_boot_image(
        self,
        identity: str,
        device: str,
        boot_image: str | None = None,
        write_protected: bool = True,
    ) -> None:
        self.uuid(identity)
        if device != "Cd":
            raise fishy.NotSupportedError(f"the lab has no virtual {device}")
        self.vm.insert(Path(boot_image) if boot_image else None)
        log.info(
            "%s: virtual CD %s", self.machine.name, f"holds {boot_image}" if boot_image else "empty"
        )


class Sessions:
    """Redfish session login in front of a WSGI application (see the module docstring).

    ``users`` maps user names to passwords. ``logins`` counts sessions created and
    ``basic_requests`` the requests authenticated with HTTP Basic, for tests to see which
    one a client used.
    """

    def __init__(self, app: WsgiApp, users: dict[str, str], *, basic: bool = True) -> None:
        self.app = app
        self.users = users
        self.basic = basic
        self.tokens: dict[str, tuple[str, str]] = {}
        """Token to (session id, user name)."""
        self.logins = 0
        self.basic_requests = 0
        self._lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        path = request.path.rstrip("/")
        if path in OPEN_PATHS:
            if path == ROOT and request.method == "GET":
                return self._root(environ)(environ, start_response)
            return self.app(environ, start_response)
        if path == SESSIONS and request.method == "POST":
            return self._login(request)(environ, start_response)
        user = self._authenticated(request)
        if user is None:
            return _error(401, "authentication required")(environ, start_response)
        if path.startswith(SESSIONS + "/"):
            return self._session(request, path.rpartition("/")[2])(environ, start_response)
        if path == SESSIONS:
            return _json(200, self._collection())(environ, start_response)
        if path == SESSION_SERVICE:
            return _json(200, _service())(environ, start_response)
        return self.app(environ, start_response)

    def _root(self, environ: Environ) -> Response:
        inner = Response.from_app(self.app, environ)
        body = json.loads(inner.get_data())
        body["SessionService"] = {"@odata.id": SESSION_SERVICE}
        body.setdefault("Links", {})["Sessions"] = {"@odata.id": SESSIONS}
        return _json(inner.status_code, body)

    def _login(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data() or b"{}")
            user, password = str(body["UserName"]), str(body["Password"])
        except (ValueError, KeyError, TypeError):
            return _error(400, "a session needs UserName and Password")
        if not self._valid(user, password):
            log.info("session login refused for %r", user)
            return _error(401, "invalid credentials")
        token, session = secrets.token_urlsafe(24), secrets.token_hex(8)
        with self._lock:
            self.tokens[token] = (session, user)
            self.logins += 1
        log.info("session %s opened for %r", session, user)
        response = _json(201, _session_body(session, user))
        response.headers["X-Auth-Token"] = token
        response.headers["Location"] = f"{SESSIONS}/{session}"
        return response

    def _session(self, request: Request, session: str) -> Response:
        with self._lock:
            owned = {s: (t, u) for t, (s, u) in self.tokens.items()}
            if session not in owned:
                return _error(404, f"no session {session}")
            token, user = owned[session]
            if request.method == "DELETE":
                del self.tokens[token]
                log.info("session %s closed", session)
                return Response(status=204)
        return _json(200, _session_body(session, user))

    def _collection(self) -> dict[str, Any]:
        with self._lock:
            members = [{"@odata.id": f"{SESSIONS}/{s}"} for s, _ in self.tokens.values()]
        return {
            "@odata.id": SESSIONS,
            "@odata.type": "#SessionCollection.SessionCollection",
            "Name": "Sessions",
            "Members": members,
            "Members@odata.count": len(members),
        }

    def _authenticated(self, request: Request) -> str | None:
        token = request.headers.get("X-Auth-Token")
        if token:
            with self._lock:
                found = self.tokens.get(token)
            return found[1] if found else None
        auth = request.authorization
        if self.basic and auth is not None and auth.type == "basic":
            user, password = auth.username or "", auth.password or ""
            if self._valid(user, password):
                with self._lock:
                    self.basic_requests += 1
                return user
        return None

    def _valid(self, user: str, password: str) -> bool:
        expected = self.users.get(user)
        return expected is not None and hmac.compare_digest(expected, password)


def _service() -> dict[str, Any]:
    return {
        "@odata.id": SESSION_SERVICE,
        "@odata.type": "#SessionService.v1_1_8.SessionService",
        "Id": "SessionService",
        "Name": "Session Service",
        "ServiceEnabled": True,
        "Sessions": {"@odata.id": SESSIONS},
    }


def _session_body(session: str, user: str) -> dict[str, Any]:
    return {
        "@odata.id": f"{SESSIONS}/{session}",
        "@odata.type": "#Session.v1_3_0.Session",
        "Id": session,
        "Name": f"Session {session}",
        "UserName": user,
    }


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json(
        status,
        {"error": {"code": "Base.1.0.GeneralError", "message": message}},
    )


def emulator_app(systems: AbstractSystemsDriver, state_dir: Path) -> Any:
    """sushy-tools' Flask application serving ``systems`` (one per process: the emulator's
    application is a module-level object), with its own state under ``state_dir``.

    sushy-tools chooses its systems driver from its configuration among those it ships; the
    lab's is none of them, so the application is given a subclass whose ``systems`` is it.
    """
    app = emulator.app

    class LabApplication(type(app)):  # type: ignore[misc]
        @property
        def systems(self) -> AbstractSystemsDriver:
            return systems

    app.__class__ = LabApplication
    # The emulator memoizes its drivers (managers, virtual media) on the application.
    app.__dict__.pop("_cache", None)
    app.configure(
        extra_config={
            "SUSHY_EMULATOR_STATE_DIR": str(state_dir),
            "SUSHY_EMULATOR_FEATURE_SET": "full",
            "SUSHY_EMULATOR_VMEDIA_DEVICES": {
                "Cd": {"Name": "Virtual CD", "MediaTypes": ["CD", "DVD"]}
            },
        }
    )
    return app


def serve(
    systems: AbstractSystemsDriver,
    users: dict[str, str],
    *,
    address: str,
    port: int,
    tls: TlsFiles | None,
    state_dir: Path,
    basic: bool = True,
) -> tuple[BaseWSGIServer, Sessions]:
    """A threaded HTTP(S) server (not yet serving: call ``serve_forever``) for the emulator
    with ``systems`` behind :class:`Sessions`.

    Raises:
        OSError: the address and port cannot be bound.
    """
    sessions = Sessions(emulator_app(systems, state_dir).wsgi_app, users, basic=basic)
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)
    # Request lines say nothing the BMC log does not; bodies (passwords) are never logged.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(address, port, sessions, threaded=True, ssl_context=context)
    return server, sessions


def main(argv: list[str] | None = None) -> int:
    """``python -m arges.lab.redfish LAB_DIR NAME`` (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    lab_dir, name = Path(args[0]), args[1]
    state = load_state(lab_dir)
    server = state.server(name) if state is not None else None
    if state is None or server is None:
        log.error("no lab server %s in %s", name, lab_dir)
        return 1
    login = load_credentials(lab_dir)[name]
    media = server.run_dir / "media"
    media.mkdir(parents=True, exist_ok=True)
    # Images InsertMedia fetches go to the temporary directory: the server's own.
    tempfile.tempdir = str(media)
    vm = VirtualMachine(
        server.machine(state.ovmf_code),
        namespace=state.network.namespace,
        qemu=state.qemu,
        default_boot="network",
    )
    http, _ = serve(
        QemuSystems(vm),
        {login.username: login.password},
        address=server.bmc_address,
        port=server.bmc_port,
        tls=files(lab_dir / "tls"),
        state_dir=server.run_dir / "redfish-state",
    )
    stop = threading.Event()

    def shutdown(*_: object) -> None:
        stop.set()
        threading.Thread(target=http.shutdown, daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shutdown)
    log.info("%s: Redfish BMC on https://%s:%d", name, server.bmc_address, server.bmc_port)
    try:
        vm.power_on()
        if not stop.is_set():
            http.serve_forever()
    finally:
        vm.power_off()
        http.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
