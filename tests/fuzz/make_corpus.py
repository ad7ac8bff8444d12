#!/usr/bin/env python3
"""Writes seed inputs for codec_fuzz: one valid packet per type, both versions.
First byte: 0 = MQTT 3.1.1, 1 = MQTT 5.0."""
import pathlib

def s(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text

def pkt(first: int, body: bytes) -> bytes:
    n, out = len(body), bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes([first]) + bytes(out) + body

seeds = {
    "connect_v3": (0, pkt(0x10, s(b"MQTT") + b"\x04\xee\x00\x3c" + s(b"cid") + s(b"w/t") + s(b"bye") + s(b"u") + s(b"p"))),
    "connect_v5": (1, pkt(0x10, s(b"MQTT") + b"\x05\xc6\x00\x3c\x05\x11\x00\x00\x0e\x10" + s(b"cid") + b"\x05\x18\x00\x00\x00\x05" + s(b"w/t") + s(b"bye") + s(b"u") + s(b"p"))),
    "publish_v3": (0, pkt(0x32, s(b"a/b") + b"\x00\x01hello") + pkt(0x40, b"\x00\x01")),
    "publish_v5": (1, pkt(0x34, s(b"a/b") + b"\x00\x02\x08\x01\x01\x23\x00\x05" + s(b"r")[0:0] + b"x") + pkt(0x50, b"\x00\x02\x00\x00")),
    "subscribe_v3": (0, pkt(0x82, b"\x00\x0a" + s(b"a/+") + b"\x01" + s(b"$share/g/#") + b"\x02") + pkt(0x90, b"\x00\x0a\x01\x80")),
    "subscribe_v5": (1, pkt(0x82, b"\x00\x0a\x02\x0b\x05" + s(b"a/#") + b"\x2e") + pkt(0x90, b"\x00\x0a\x00\x02")),
    "unsubscribe_v5": (1, pkt(0xa2, b"\x00\x03\x00" + s(b"a/#")) + pkt(0xb0, b"\x00\x03\x00\x11")),
    "misc_v5": (1, pkt(0xc0, b"") + pkt(0xd0, b"") + pkt(0xe0, b"\x8e\x00") + pkt(0xf0, b"\x18\x0e\x15" + s(b"SCRAM-SHA-1")[0:0] + s(b"METHOD") + b"\x16" + s(b"d")[0:3])),
    "connack_v3": (0, pkt(0x20, b"\x01\x00") + pkt(0x62, b"\x00\x07") + pkt(0x70, b"\x00\x07")),
}
out = pathlib.Path(__file__).parent / "corpus"
out.mkdir(exist_ok=True)
for name, (version, data) in seeds.items():
    (out / name).write_bytes(bytes([version]) + data)
