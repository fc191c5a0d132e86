"""Encryption at rest: MultiFernet over the configured keys (newest first)."""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

__all__ = ["Vault", "InvalidToken"]


class Vault:
    """Encrypts and decrypts short secrets; older keys keep decrypting until rotated."""

    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def encrypt(self, plaintext: str) -> str:
        """Encrypt a string under the newest key."""
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Decrypt a value written under any configured key."""
        return self._fernet.decrypt(token.encode("ascii")).decode()

    def rotate(self, token: str) -> str:
        """Re-encrypt a value under the newest key."""
        return self._fernet.rotate(token.encode("ascii")).decode("ascii")


_current: Vault | None = None


def configure(keys: list[str]) -> Vault:
    """Install the process-wide vault; the encrypted column type reads through it."""
    global _current
    _current = Vault(keys)
    return _current


def current_vault() -> Vault:
    if _current is None:
        raise RuntimeError("the vault is not configured; call create_app() first")
    return _current
