"""Every exception class Arges defines derives from :class:`arges.errors.ArgesError`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import arges
from arges.errors import ArgesError

SKIPPED_MODULES = {"arges.__main__", "arges.agent.__main__"}
"""Entry points: importing them runs the program."""


def arges_modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(arges.__path__, "arges.")
        if info.name not in SKIPPED_MODULES
    )


def defined_exceptions() -> dict[str, type[BaseException]]:
    found = {}
    for name in arges_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
            ):
                found[f"{name}.{attr}"] = value
    return found


def test_the_walk_sees_the_package() -> None:
    modules = arges_modules()
    # The layers' packages and a few leaves, so an empty or broken walk cannot pass.
    for expected in ("arges.apiserver.errors", "arges.power.errors", "arges.agent.client"):
        assert expected in modules
    assert len(defined_exceptions()) >= 40


def test_every_exception_class_derives_from_the_root() -> None:
    strays = sorted(
        name for name, cls in defined_exceptions().items() if not issubclass(cls, ArgesError)
    )
    assert strays == []


def test_input_errors_stay_value_errors() -> None:
    """Callers catch bad-input errors as ``ValueError``; the root must not take that away."""
    from arges.boot.dhcp import Malformed
    from arges.discovery.api import BadRegistration
    from arges.lab.plan import PlanError
    from arges.selectors import SelectorError

    for cls in (Malformed, BadRegistration, PlanError, SelectorError):
        assert issubclass(cls, ValueError)
        assert issubclass(cls, ArgesError)
