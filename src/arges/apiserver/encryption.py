"""Secrets encrypted at rest, as kube-apiserver's EncryptionConfiguration ``aesgcm`` provider.

What is stored for an encrypted resource (Secrets) is what kube-apiserver writes to etcd
(``k8s.io/apiserver/pkg/storage/value/encrypt/aes``, behind its prefix transformer)::

    k8s:enc:aesgcm:v1:<key name>:<12-byte random nonce><AES-GCM ciphertext and 16-byte tag>

with the object's storage key (``/registry/secrets/<namespace>/<name>``) as additional
authenticated data, so a ciphertext copied onto another object's row does not open. Writes
use the first key; reads accept every key of the configuration, and unprefixed data is read
as plaintext (the ``identity`` provider listed last), which is how a database written before
encryption is read once and then rewritten encrypted.

The keys live in ``DATA_DIR/pki/encryption-config.yaml`` (mode 0600), an
``apiserver.config.k8s.io/v1`` EncryptionConfiguration that kube-apiserver itself would
accept: one ``aesgcm`` provider with 256-bit keys, then ``identity``. The AES-GCM itself is
the ``cryptography`` package's.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from arges.errors import ArgesError

PREFIX = b"k8s:enc:aesgcm:v1:"
NONCE_BYTES = 12
KEY_BYTES = 32
CONFIG_FILE = "encryption-config.yaml"
ENCRYPTED_RESOURCES = frozenset({"secrets"})
"""Qualified resource names stored encrypted (kube's ``resources: [secrets]``)."""
KEY_NAME = re.compile(r"^key(\d+)$")


class EncryptionError(ArgesError):
    """Stored data that cannot be decrypted (unknown key, tampered or misplaced ciphertext),
    or an encryption configuration that cannot be read."""


@dataclass(frozen=True)
class Key:
    """One AES-GCM key: its name (recorded in every value it seals) and 32 bytes."""

    name: str
    secret: bytes = b""

    def __repr__(self) -> str:
        return f"Key({self.name!r})"


def storage_key(resource: str, namespace: str, name: str) -> bytes:
    """The etcd key kube-apiserver would store an object under: the authenticated data."""
    middle = f"{namespace}/{name}" if namespace else name
    return f"/registry/{resource}/{middle}".encode()


class Encryption:
    """Seals and opens stored values of the encrypted resources (see the module docstring).

    Raises:
        ValueError: from the constructor, given no keys or a key that is not 32 bytes.
    """

    def __init__(self, keys: Sequence[Key], resources: frozenset[str] = ENCRYPTED_RESOURCES):
        if not keys:
            raise ValueError("an encryption configuration needs at least one key")
        for key in keys:
            if len(key.secret) != KEY_BYTES:
                raise ValueError(f"key {key.name!r} is not {KEY_BYTES} bytes")
        self.keys = list(keys)
        self.resources = resources
        self._ciphers = {k.name: AESGCM(k.secret) for k in keys}
        self._prefix = PREFIX + keys[0].name.encode() + b":"

    @property
    def write_key(self) -> str:
        """The name of the key new values are sealed with."""
        return self.keys[0].name

    def applies(self, resource: str) -> bool:
        """Whether values of ``resource`` are stored encrypted."""
        return resource in self.resources

    def seal(self, resource: str, namespace: str, name: str, data: bytes) -> bytes:
        """``data`` encrypted with the write key, prefixed as kube-apiserver prefixes it."""
        nonce = os.urandom(NONCE_BYTES)
        cipher = self._ciphers[self.keys[0].name]
        sealed = cipher.encrypt(nonce, data, storage_key(resource, namespace, name))
        return self._prefix + nonce + sealed

    def open(self, resource: str, namespace: str, name: str, data: bytes) -> bytes:
        """The plaintext of a stored value (unprefixed values are plaintext already).

        Raises:
            EncryptionError: the key is not configured, or the value does not authenticate.
        """
        if not data.startswith(PREFIX):
            return data
        key_name, sep, rest = data[len(PREFIX) :].partition(b":")
        cipher = self._ciphers.get(key_name.decode(errors="replace"))
        where = f"{resource} {namespace}/{name}".replace(" /", " ")
        if not sep or cipher is None:
            raise EncryptionError(
                f"cannot decrypt {where}: key {key_name.decode(errors='replace')!r} is not in "
                "the encryption configuration"
            )
        try:
            return cipher.decrypt(
                rest[:NONCE_BYTES], rest[NONCE_BYTES:], storage_key(resource, namespace, name)
            )
        except InvalidTag as exc:
            raise EncryptionError(
                f"cannot decrypt {where}: the value does not authenticate"
            ) from exc

    def current(self, data: bytes) -> bool:
        """Whether a stored value is sealed with the write key (else it is to be rewritten)."""
        return data.startswith(self._prefix)


def new_key(existing: Sequence[Key] = ()) -> Key:
    """A fresh random key named ``key<N>``, N one more than the highest existing number."""
    numbers = [int(m.group(1)) for k in existing if (m := KEY_NAME.match(k.name))]
    return Key(f"key{max(numbers, default=0) + 1}", secrets.token_bytes(KEY_BYTES))


def config_document(keys: Sequence[Key]) -> dict[str, Any]:
    """The EncryptionConfiguration holding ``keys`` (first one writes), then ``identity``."""
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [
            {
                "resources": sorted(ENCRYPTED_RESOURCES),
                "providers": [
                    {
                        "aesgcm": {
                            "keys": [
                                {"name": k.name, "secret": base64.b64encode(k.secret).decode()}
                                for k in keys
                            ]
                        }
                    },
                    {"identity": {}},
                ],
            }
        ],
    }


def read_config(path: Path) -> list[Key]:
    """The aesgcm keys of the EncryptionConfiguration at ``path``, write key first.

    Raises:
        EncryptionError: the file cannot be read or is not such a configuration.
    """
    try:
        doc = yaml.safe_load(path.read_text())
        providers = doc["resources"][0]["providers"]
        entries = next(p["aesgcm"]["keys"] for p in providers if "aesgcm" in p)
        keys = [Key(str(e["name"]), base64.b64decode(e["secret"], validate=True)) for e in entries]
        Encryption(keys)
    except OSError as exc:
        raise EncryptionError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (yaml.YAMLError, KeyError, IndexError, TypeError, StopIteration) as exc:
        raise EncryptionError(f"{path} is not an EncryptionConfiguration with aesgcm keys") from exc
    except (binascii.Error, ValueError) as exc:
        raise EncryptionError(f"{path}: {exc}") from exc
    return keys


def write_config(path: Path, keys: Sequence[Key]) -> None:
    """Write the configuration of ``keys`` atomically and durably, mode 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(config_document(keys), out, sort_keys=False)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def ensure_config(pki: Path) -> Encryption:
    """The encryption of ``pki/encryption-config.yaml``, created with one new key if absent.

    Raises:
        EncryptionError: an existing file cannot be read.
    """
    path = pki / CONFIG_FILE
    if not path.exists():
        write_config(path, [new_key()])
    return Encryption(read_config(path))
