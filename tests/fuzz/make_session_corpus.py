#!/usr/bin/env python3
"""Seed scripts for session_fuzz: records of [kind][length][bytes]; kinds:
0 client bytes, 1 broker bytes, 2 valid auth answer, 3 invalid, 4 handshake timer, 5 broker closed,
6 unavailable, 7 valid but stale, 8 auth event (first byte: kind % 5, 0x80 other user, 0x40 other session),
9 timer (first byte: kind % 4), 10 client closed, 11 shutdown. An odd total length means a RabbitMQ
upstream; length % 4 >= 2 a broker with max keep-alive 10, maximum QoS 1 and no retain."""
import pathlib

def s(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text

def pkt(first: int, body: bytes) -> bytes:
    return bytes([first, len(body)]) + body

def rec(kind: int, data: bytes = b"") -> bytes:
    return bytes([kind, len(data)]) + data

connect3 = pkt(0x10, s(b"MQTT") + b"\x04\x02\x00\x1e" + s(b"phone"))
connect5_will = pkt(0x10, s(b"MQTT") + b"\x05\x06\x00\x1e\x00" + s(b"phone") + b"\x00" + s(b"private/alice/w") + s(b"x"))
auth = pkt(0x30, s(b"service/auth/tok"))
sub = pkt(0x82, b"\x00\x01" + s(b"private/alice/#") + b"\x02" + s(b"#") + b"\x00")
sub5 = pkt(0x82, b"\x00\x01\x00" + s(b"$share/g/private/+/x") + b"\x01")
pub = pkt(0x32, s(b"private/alice/x") + b"\x00\x02hi")
denied = pkt(0x32, s(b"private/bob/x") + b"\x00\x03no")
connack, connack5 = pkt(0x20, b"\x00\x00"), pkt(0x20, b"\x00\x00\x00")
suback = pkt(0x90, b"\x00\x01\x02")

disconnect = pkt(0xe0, b"")
deliver_denied_q2 = pkt(0x34, s(b"private/bob/x") + b"\x00\x07no")
pubrel7 = pkt(0x62, b"\x00\x07")
deliver_news = pkt(0x30, s(b"public/sport/news") + b"hi")
unsuback = pkt(0xb0, b"\xff\xff")
pingresp = pkt(0xd0, b"")

seeds = {
    "held_disconnect": rec(0, connect3) + rec(0, auth) + rec(0, pub) + rec(0, disconnect) + rec(10) + rec(2) + rec(1, connack),
    "deliver_denied": rec(0, connect3) + rec(0, auth) + rec(2) + rec(1, connack) + rec(1, deliver_denied_q2) + rec(1, pubrel7),
    "acl_changed": rec(0, connect3) + rec(0, auth) + rec(2) + rec(1, connack) + rec(0, pkt(0x82, b"\x00\x05" + s(b"public/+/news") + b"\x01"))
                   + rec(1, pkt(0x90, b"\x00\x05\x01")) + rec(8, b"\x03") + rec(1, deliver_news) + rec(1, unsuback),
    "resync": rec(0, connect3) + rec(0, auth) + rec(7) + rec(1, connack) + rec(8, b"\x04") + rec(6) + rec(9, b"\x02") + rec(3),
    "revoked": rec(0, connect3) + rec(0, auth) + rec(2) + rec(1, connack) + rec(8, b"\x40") + rec(8, b"\x00"),
    "pings": rec(0, connect3) + rec(0, auth) + rec(2) + rec(1, connack) + rec(9, b"\x03") + rec(1, pingresp) + rec(11, b"\x00") + b"\x00\x00",
    "v3_flow": rec(0, connect3) + rec(0, sub) + rec(0, auth) + rec(2) + rec(1, connack) + rec(0, pub) + rec(0, denied) + rec(1, suback),
    "v5_will": rec(0, connect5_will) + rec(0, auth) + rec(2) + rec(1, connack5) + rec(0, sub5),
    "invalid": rec(0, connect3) + rec(0, pub) + rec(0, auth) + rec(3),
    "direct": rec(0, pkt(0x10, s(b"MQTT") + b"\x04\xc2\x00\x1e" + s(b"c") + s(b"u") + s(b"tok"))) + rec(2) + rec(1, connack) + rec(0, pub),
}
out = pathlib.Path(__file__).parent / "session_corpus"
out.mkdir(exist_ok=True)
for name, data in seeds.items():
    (out / name).write_bytes(data)
