"""Hand-rolled MQTT 3.1.1 packets and a minimal RFC 6455 client, for tests
and benchmarks that need to choose exactly how bytes are framed."""
import base64
import os
import socket
import struct

def ws_frame(opcode, payload, fin=True):
    """A client frame: always masked (RFC 6455 5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawWebSocket:
    """Just enough of RFC 6455 to send frames the way we choose."""

    def __init__(self, port, path="/mqtt", protocols="mqtt", origin=None, tls=None, prefix=b""):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if prefix:
            sock.sendall(prefix)
        self.sock = tls.wrap_socket(sock, server_hostname="localhost") if tls else sock
        lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Version: 13"]
        if protocols is not None:
            lines.append("Sec-WebSocket-Protocol: " + protocols)
        if origin:
            lines.append("Origin: " + origin)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode().split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines if ":" in h)}
        self.mqtt = b""

    def send(self, opcode, payload, fin=True):
        self.sock.sendall(ws_frame(opcode, payload, fin))

    def _need(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def frame(self):
        b0, b1 = self._need(2)
        self.assert_unmasked(b1)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._need(8))[0]
        return b0 & 0x80, b0 & 0x0F, self._need(n)

    @staticmethod
    def assert_unmasked(b1):
        assert not b1 & 0x80, "server frames are never masked"

    def packet(self):
        """The next MQTT packet, however the server framed it; control frames are collected."""
        while True:
            parsed = parse_mqtt(self.mqtt)
            if parsed:
                packet, self.mqtt = parsed
                return packet
            fin, opcode, payload = self.frame()
            if opcode in (0, 2):
                self.mqtt += payload
            elif opcode == 8:
                raise EOFError("close frame " + payload.hex())
            elif opcode == 1:
                raise AssertionError("server sent a text frame")

    def close(self):
        self.sock.close()


def mqtt_string(text):
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def varint(n):
    """A Variable Byte Integer [MQTT-1.5.5] (remaining lengths, 5.0 property lengths)."""
    out = b""
    while True:
        digit, n = n % 128, n // 128
        out += bytes([digit | (0x80 if n else 0)])
        if not n:
            return out


def mqtt_packet(first_byte, body):
    return bytes([first_byte]) + varint(len(body)) + body


def connect_packet(client_id, username=None, password=None, version=4, props=b""):
    """A clean-session CONNECT, keep-alive 30; version 5 adds its property list (`props`, encoded)."""
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    payload = mqtt_string(client_id) + (mqtt_string(username) if username else b"") + (
        mqtt_string(password) if password else b"")
    properties = varint(len(props)) + props if version == 5 else b""
    return mqtt_packet(0x10, mqtt_string("MQTT") + bytes([version, flags]) + struct.pack(">H", 30) + properties +
                       payload)


def publish_packet(topic, payload, qos=0, packet_id=1):
    body = mqtt_string(topic) + (struct.pack(">H", packet_id) if qos else b"") + payload
    return mqtt_packet(0x30 | (qos << 1), body)


def subscribe_packet(packet_id, topic, qos, version=4):
    properties = b"\x00" if version == 5 else b""
    return mqtt_packet(0x82, struct.pack(">H", packet_id) + properties + mqtt_string(topic) + bytes([qos]))


def parse_mqtt(data):
    """(packet bytes, rest) or None when incomplete."""
    length, multiplier, i = 0, 1, 1
    while True:
        if i >= len(data):
            return None
        length += (data[i] & 0x7F) * multiplier
        multiplier *= 128
        i += 1
        if not data[i - 1] & 0x80:
            break
    if len(data) < i + length:
        return None
    return data[:i + length], data[i + length:]


def read_packet(sock, buffer):
    """Reads from `sock` (a socket, or anything with recv) until `buffer` holds
    a whole packet: (packet bytes, rest). EOFError when the peer closes first."""
    while True:
        parsed = parse_mqtt(buffer)
        if parsed:
            return parsed
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed")
        buffer += chunk


def packet_body(packet):
    """What follows the fixed header (first byte and remaining length) of a whole packet."""
    at = 1
    while packet[at] & 0x80:
        at += 1
    return packet[at + 1:]


def auth_exchange(port, client_id, token, timeout=10):
    """A 3.1.1 CONNECT and the auth PUBLISH (QoS 0) in one write to the proxy
    on 127.0.0.1:port: (the proxy's answer PUBLISH, the open socket), after
    asserting the CONNACK accepted the connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(connect_packet(client_id) + publish_packet("service/auth/" + token, b"", qos=0))
    packet, buffer = read_packet(sock, b"")
    assert packet[0] == 0x20 and packet[3] == 0, packet.hex()  # CONNACK accepted
    packet, buffer = read_packet(sock, buffer)
    assert packet[0] & 0xF0 == 0x30, packet.hex()
    return packet, sock


def publish_fields(packet):
    """(topic, payload) of a QoS 0 PUBLISH."""
    rest = parse_mqtt(packet) and packet[1:]
    while rest[0] & 0x80:
        rest = rest[1:]
    rest = rest[1:]
    n = struct.unpack(">H", rest[:2])[0]
    return rest[2:2 + n].decode(), rest[2 + n:]


# 5.0 property identifiers by the size of their value [MQTT-2.2.2.2]: those a CONNACK may carry.
_BYTE_PROPS = {0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A, 0x01}
_TWO_BYTE_PROPS = {0x13, 0x21, 0x22}
_FOUR_BYTE_PROPS = {0x02, 0x11, 0x27}
_STRING_PROPS = {0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F}  # and binary data: same shape


def connack_properties(packet):
    """The properties of a whole 5.0 CONNACK, {identifier: value} (user properties left out)."""
    body = packet_body(packet)
    at, length, shift = 2, 0, 0
    while True:
        length |= (body[at] & 0x7F) << shift
        shift += 7
        at += 1
        if not body[at - 1] & 0x80:
            break
    props, end = {}, at + length
    while at < end:
        ident, at = body[at], at + 1
        if ident in _BYTE_PROPS:
            props[ident], at = body[at], at + 1
        elif ident in _TWO_BYTE_PROPS:
            props[ident], at = struct.unpack(">H", body[at:at + 2])[0], at + 2
        elif ident in _FOUR_BYTE_PROPS:
            props[ident], at = struct.unpack(">I", body[at:at + 4])[0], at + 4
        elif ident in _STRING_PROPS:
            n = struct.unpack(">H", body[at:at + 2])[0]
            props[ident], at = body[at + 2:at + 2 + n], at + 2 + n
        elif ident == 0x26:  # user property: a string pair
            n = struct.unpack(">H", body[at:at + 2])[0]
            m = struct.unpack(">H", body[at + 2 + n:at + 4 + n])[0]
            at += 4 + n + m
        else:
            raise ValueError(f"property 0x{ident:02x} in a CONNACK")
    return props
