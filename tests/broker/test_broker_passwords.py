"""`hash_password` writes what `mosquitto_passwd` writes, and what the broker accepts."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from doorstep.broker import hash_password, new_password
from doorstep.broker.passwords import HASH_PATTERN


def mosquitto_passwd(file: Path, username: str, password: str) -> str:
    """The hash `mosquitto_passwd -b` writes for `username`."""
    tool = shutil.which("mosquitto_passwd") or shutil.which(
        "mosquitto_passwd", path="/usr/local/sbin:/usr/sbin:/sbin"
    )
    assert tool is not None, "mosquitto_passwd not found; run scripts/setup"
    subprocess.run([tool, "-c", "-b", str(file), username, password], check=True)
    user, _, hashed = file.read_text().strip().partition(":")
    assert user == username
    return hashed


def test_matches_mosquitto_passwd_for_the_same_salt(tmp_path: Path) -> None:
    password = "correct horse:battery$staple"
    reference = mosquitto_passwd(tmp_path / "passwords", "hub-3f9a1c2b", password)
    match = re.fullmatch(r"\$7\$(\d+)\$([^$]+)\$([^$]+)", reference)
    assert match is not None, reference
    iterations, salt = int(match[1]), base64.b64decode(match[2])

    assert len(salt) == 12
    assert hash_password(password, salt=salt, iterations=iterations) == reference


def test_fresh_hashes_are_salted_and_well_formed() -> None:
    first, second = hash_password("same"), hash_password("same")

    assert first != second
    assert HASH_PATTERN.fullmatch(first)
    assert first.startswith("$7$101$")


def test_iterations_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        hash_password("x", iterations=0)


def test_new_passwords_are_long_and_distinct() -> None:
    passwords = {new_password() for _ in range(100)}

    assert len(passwords) == 100
    assert all(len(password) == 32 for password in passwords)


def test_broker_accepts_our_hashes_at_any_iteration_count(broker, connack) -> None:
    password = new_password()
    broker.update_hubs({"hub-0000beef": hash_password(password, iterations=1000)})

    assert connack("hub-0000beef", password) == "Success"
    assert connack("hub-0000beef", password + "x") == "Not authorized"
