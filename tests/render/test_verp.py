from engine.render.verp import parse_verp, verp_address


def test_verp_round_trip_and_forgery() -> None:
    address = verp_address(1234, b"secret", "bounces@example.com")
    assert address.startswith("bounces+m1234.") and address.endswith("@example.com")
    assert parse_verp(address, b"secret") == 1234
    assert parse_verp(f"<{address}>", b"secret") == 1234
    assert parse_verp(address, b"other secret") is None
    assert parse_verp(address.replace("m1234", "m1235"), b"secret") is None
    assert parse_verp("someone@example.com", b"secret") is None
