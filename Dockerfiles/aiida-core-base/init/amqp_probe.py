"""Is an AMQP 0-9-1 broker (RabbitMQ) up? A probe that leaves no warning in the broker's log.

Used by the daemon service (/etc/init/aiida-daemon) before circus starts the worker; the
with-services image's readiness check of RabbitMQ (/etc/init/rabbitmq-check) does the same in bash.

The broker is up when it answers the protocol header with Connection.Start (a bare TCP connect is
not enough evidence). The probe then logs in, opens the virtual host and closes the connection by
the protocol (Connection.Close, answered with Close-Ok): RabbitMQ logs a client that closes its
socket after the header as a warning ("client unexpectedly closed TCP connection"), a false alarm
in every start's log, and one that closes properly at info. RabbitMQ's log levels stay as they
are, so a refused login (an error) or a client that really vanishes (a warning) still shows.

Frames: the AMQP 0-9-1 specification, class `connection` (type 1 = method, channel 0, big-endian
sizes, 0xCE frame end).
"""

import socket
import struct

PROTOCOL_HEADER = b'AMQP\x00\x00\x09\x01'
CONNECTION = 10
START, START_OK, TUNE, TUNE_OK, OPEN, OPEN_OK, CLOSE, CLOSE_OK = 10, 11, 30, 31, 40, 41, 50, 51


class ProtocolError(Exception):
    """The broker answered something else than the next step of the handshake."""


def answers(host: str, port: int, username: str = 'guest', password: str = 'guest', virtual_host: str = '/') -> bool:
    """True when the broker at host:port answers the protocol header with Connection.Start; the
    connection is then closed cleanly (a broker that refuses the login has logged why)."""
    try:
        sock = socket.create_connection((host, port), timeout=2)
        # Each step is sent at once: with Nagle's algorithm a write that follows another unanswered
        # one waits for the broker's delayed acknowledgement (about 40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return False
    with sock:
        try:
            sock.sendall(PROTOCOL_HEADER)
            receive_method(sock, START)
        except (OSError, ProtocolError):
            return False
        try:
            log_in_and_close(sock, username, password, virtual_host)
        except (OSError, ProtocolError):
            pass
    return True


def log_in_and_close(sock: socket.socket, username: str, password: str, vhost: str) -> None:
    credentials = b'\x00' + username.encode() + b'\x00' + password.encode()
    client_properties = struct.pack('>I', 0)
    sock.sendall(method(START_OK, client_properties + shortstr('PLAIN') + longstr(credentials) + shortstr('en_US')))
    receive_method(sock, TUNE)
    # One channel, the smallest frame size a server accepts, no heartbeat.
    sock.sendall(method(TUNE_OK, struct.pack('>HIH', 1, 4096, 0)))
    sock.sendall(method(OPEN, shortstr(vhost) + shortstr('') + b'\x00'))
    receive_method(sock, OPEN_OK)
    sock.sendall(method(CLOSE, struct.pack('>H', 200) + shortstr('') + struct.pack('>HH', 0, 0)))
    receive_method(sock, CLOSE_OK)


def shortstr(text: str) -> bytes:
    data = text.encode()
    return bytes([len(data)]) + data


def longstr(data: bytes) -> bytes:
    return struct.pack('>I', len(data)) + data


def method(method_id: int, arguments: bytes) -> bytes:
    """A method frame of class `connection` on channel 0."""
    payload = struct.pack('>HH', CONNECTION, method_id) + arguments
    return struct.pack('>BHI', 1, 0, len(payload)) + payload + b'\xce'


def receive_method(sock: socket.socket, method_id: int) -> None:
    """Read one frame; ProtocolError unless it is that method of class `connection`."""
    kind, _, size = struct.unpack('>BHI', receive_exactly(sock, 7))
    body = receive_exactly(sock, size + 1)
    if kind != 1 or body[-1:] != b'\xce' or size < 4 or struct.unpack('>HH', body[:4]) != (CONNECTION, method_id):
        raise ProtocolError(f'expected connection method {method_id}, got frame type {kind}: {body[:4].hex()}')


def receive_exactly(sock: socket.socket, count: int) -> bytes:
    data = b''
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ProtocolError('the broker closed the connection')
        data += chunk
    return data
