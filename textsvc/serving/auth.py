"""API keys: read from the configuration or a file, kept only as SHA-256 hashes, and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

from textsvc.errors import ConfigError

HASH_PREFIX = "sha256:"
HASH_FORM = re.compile(r"sha256:[0-9a-f]{64}")


def hash_key(key: str) -> str:
    """The form a key file holds: `sha256:` and the key's SHA-256 in hex."""
    return HASH_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def read_key_file(path: str | Path, field: str) -> list[str]:
    """The hashes in a key file, one a line; blank lines and '#' comments skipped; anything else is refused."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{field}: cannot read the key file ({type(error).__name__})", field=field) from error
    hashes = [line.split("#", 1)[0].strip() for line in lines]
    for number, entry in enumerate(hashes, 1):
        if entry and not HASH_FORM.fullmatch(entry):  # a raw key in the file would sit on disk in plain text
            raise ConfigError(f"{field}: line {number} is not a `sha256:HEX` hash; make one with "
                              "`textsvc hash-key`", field=field)
    return [entry for entry in hashes if entry]


class KeyRing:
    """The accepted keys as SHA-256 digests: a raw key given in the configuration is hashed here and not kept."""

    def __init__(self, keys: tuple[str, ...] | None = None, key_file: str | None = None, field: str = "api_keys"):
        entries = [key if HASH_FORM.fullmatch(key) else hash_key(key) for key in keys or ()]
        entries += read_key_file(key_file, f"{field}_file") if key_file else []
        self._digests = [bytes.fromhex(entry.removeprefix(HASH_PREFIX)) for entry in entries]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def match(self, token: str) -> str | None:
        """The matching key's id (the first 12 hex digits of its hash), or None. Every digest is compared, in
        constant time, so the time taken says nothing about which key came close."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found = None
        for known in self._digests:
            if hmac.compare_digest(digest, known):
                found = known
        return found.hex()[:12] if found is not None else None


def bearer_token(authorization: str) -> str | None:
    """The key of an `Authorization: Bearer KEY` header, or None."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
