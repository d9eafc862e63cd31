"""Generated passwords, and SCRAM verifiers so a plain password never reaches a server or its log."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets


def generate() -> str:
    return secrets.token_urlsafe(18)


def scram_sha256(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for password (RFC 5802/7677)."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def pgpass_line(user: str, password: str) -> str:
    esc = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:{user}:{esc}\n"
