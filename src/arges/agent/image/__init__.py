"""The agent's boot image: a Debian kernel and an initramfs built from Debian packages.

Runs on the Arges host (never in the image); see :mod:`arges.agent.image.build`.
"""

from arges.agent.image.build import Image, ensure, prebuilt
from arges.agent.image.debs import BuildError

__all__ = ["BuildError", "Image", "ensure", "prebuilt"]
