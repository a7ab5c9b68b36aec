"""DKIM through OpenSSL: byte-identical to dkimpy's signatures, verified by dkimpy, tampering detected."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from engine.config import DkimSettings
from engine.errors import ConfigError
from engine.render.dkim import SIGNED_HEADERS, DkimSigner, canonical_body, load_signer
from engine.render.mime import BuiltEmail, address_header, build_email

DATE = datetime(2026, 12, 1, 9, 0, 5, tzinfo=UTC)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def message() -> BuiltEmail:
    return build_email(
        from_header=address_header("Kairos News <news@kairos.test>"), to="ada@example.test",
        subject="Ünïcode   subject with  spaces " * 3, text="Hello  Ada,\n\ttabbed   line   \n\n\n",
        html="<p>Hello   Ada</p>  \n", header_message_id="<news.1.7@kairos.test>", date=DATE,
        extra_headers=[("List-Unsubscribe", "<https://track.kairos.test/u/abc>"),
                       ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
                       ("List-Id", "news <news.kairos.test>"), ("Feedback-ID", "a:news:kairos:kairos.test")])


def dns_for(signer: DkimSigner):  # type: ignore[no-untyped-def]
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{signer.selector}._domainkey.{signer.domain}.".encode()
        return signer.dns_record().encode()
    return dnsfunc


def signed(signer: DkimSigner, built: BuiltEmail, timestamp: int) -> bytes:
    return built.as_bytes(first=(("DKIM-Signature", signer.sign(built.headers, built.body, timestamp)),))


def pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_rsa_signature_is_byte_identical_to_dkimpys(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = DkimSigner("kairos.test", "k1", RSA_KEY)
    built = message()
    timestamp = int(DATE.timestamp())
    monkeypatch.setattr(dkim.time, "time", lambda: float(timestamp))  # dkimpy stamps t= with the clock
    names = [n.encode() for n in SIGNED_HEADERS]
    theirs = dkim.sign(built.as_bytes(), b"k1", b"kairos.test", pem(RSA_KEY), include_headers=names,
                       canonicalize=(b"relaxed", b"relaxed"))
    ours = signed(signer, built, timestamp)
    assert ours == theirs + built.as_bytes()


def test_ed25519_signature_is_byte_identical_to_dkimpys(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = DkimSigner("kairos.test", "e1", ED_KEY)
    built = message()
    timestamp = int(DATE.timestamp())
    monkeypatch.setattr(dkim.time, "time", lambda: float(timestamp))
    seed = base64.b64encode(ED_KEY.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                 serialization.NoEncryption()))
    theirs = dkim.sign(built.as_bytes(), b"e1", b"kairos.test", seed, signature_algorithm=b"ed25519-sha256",
                       include_headers=[n.encode() for n in SIGNED_HEADERS], canonicalize=(b"relaxed", b"relaxed"))
    assert signed(signer, built, timestamp) == theirs + built.as_bytes()


@pytest.mark.parametrize("key", [RSA_KEY, ED_KEY], ids=["rsa-2048", "ed25519"])
def test_signatures_verify_and_tampering_is_detected(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> None:
    signer = DkimSigner("kairos.test", "k1", key)
    data = signed(signer, message(), int(datetime.now(UTC).timestamp()))
    dnsfunc = dns_for(signer)
    assert dkim.verify(data, dnsfunc=dnsfunc)
    signature = data.split(b"\r\n\r\n", 1)[0].split(b"DKIM-Signature: ", 1)[1].split(b"\r\nFrom:", 1)[0]
    assert b"list-unsubscribe-post" in signature.replace(b"\r\n ", b" ")
    assert not dkim.verify(data.replace(b"Subject: ", b"Subject: Re: "), dnsfunc=dnsfunc)
    assert not dkim.verify(data.replace(b"One-Click", b"One-Clack"), dnsfunc=dnsfunc)
    assert not dkim.verify(data.replace(b"Hello", b"Hallo"), dnsfunc=dnsfunc)
    # Relaxed canonicalization: re-folding or trailing spaces added by a relay do not break it.
    assert dkim.verify(data.replace(b"\r\n\r\n--", b"  \r\n\r\n--", 1), dnsfunc=dnsfunc)


def test_keys_load_from_pem_files_and_base64_seeds(tmp_path: Path) -> None:
    (tmp_path / "rsa.pem").write_bytes(pem(RSA_KEY))
    (tmp_path / "ed.pem").write_bytes(pem(ED_KEY))
    (tmp_path / "ed.seed").write_bytes(base64.b64encode(ED_KEY.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())) + b"\n")
    assert load_signer(DkimSettings("kairos.test", "k1", tmp_path / "rsa.pem")).algorithm == "rsa-sha256"
    assert load_signer(DkimSettings("kairos.test", "k1", tmp_path / "ed.pem")).algorithm == "ed25519-sha256"
    assert load_signer(DkimSettings("kairos.test", "k1", tmp_path / "ed.seed")).algorithm == "ed25519-sha256"


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read the DKIM private key"),
    (b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", "expected an unencrypted PEM"),
    (pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "1024 bits; use at least 2048"),
])
def test_a_bad_key_file_is_a_config_error_naming_file_and_field(tmp_path: Path, content: bytes | None,
                                                                problem: str) -> None:
    path = tmp_path / "dkim.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_signer(DkimSettings("kairos.test", "k1", path))
    assert str(caught.value).startswith(f"{path}: email.dkim.private_key_file: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize("body", [
    b"plain\r\nlines\r\n", b"two  spaces\r\n", b"tab\there\r\n", b"trailing \r\n", b"trailing\t\r\n",
    b"space then tab \t x\r\n\r\n\r\n", b"\r\n", b"", b"=20\r\n  indented <p>\r\n",
])
def test_relaxed_body_canonicalization_matches_the_rfc_rules(body: bytes) -> None:
    expected = re.sub(rb"[ \t]+", b" ", re.sub(rb"[ \t]+\r\n", b"\r\n", body))
    while expected.endswith(b"\r\n\r\n"):
        expected = expected[:-2]
    assert canonical_body(body) == (b"" if expected == b"\r\n" else expected)
