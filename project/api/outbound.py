"""
One HTTP POST to a webhook endpoint, safe to aim at a URL staff typed.

The host is resolved once, every address it resolves to is checked, and the
connection goes to the checked address (TLS still verifies the host's
certificate and sends its name), so a DNS answer that changes between the
check and the connection cannot reach the internal network. Loopback,
private, link-local, shared, multicast and reserved addresses are refused
unless RALLY_WEBHOOK_ALLOW_PRIVATE is on. Redirects are not followed: a 3xx
is a failed delivery. Everything times out after RALLY_WEBHOOK_TIMEOUT seconds.
"""

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

# The part of an endpoint's answer kept as its last error.
ANSWER_BYTES = 300


class Refused(Exception):
    """The URL may not be called (a private address, a bad scheme); retrying will not help."""


@dataclass
class Answer:
    status: int
    body: str


def public_address(ip) -> bool:
    """Whether `ip` is on the public internet (an IPv4-mapped IPv6 address counts as its IPv4)."""
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> str:
    """Return the address to connect to for `host`, after checking every address it has.

    Raise Refused if any of them is not public (unless private ones are allowed),
    so a name with one public and one internal address is refused too.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise OSError(f"cannot resolve the host name ({error.strerror})") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise OSError("the host name has no address")
    if not settings.RALLY_WEBHOOK_ALLOW_PRIVATE:
        for ip in addresses:
            if not public_address(ip):
                raise Refused(
                    f"refused: the host resolves to {ip}, which is not a public address "
                    "(RALLY_WEBHOOK_ALLOW_PRIVATE allows it, for development only)"
                )
    return str(addresses[0])


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host, port, address, **kwargs):
        super().__init__(host, port, **kwargs)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host, port, address, **kwargs):
        super().__init__(host, port, context=ssl.create_default_context(), **kwargs)
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: bytes, headers: dict) -> Answer:
    """POST `body` to `url`; return the answer. Raise Refused, or OSError on network failure."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("refused: the URL must start with https:// and name a host")
    if parts.scheme == "http" and not settings.RALLY_WEBHOOK_ALLOW_PRIVATE:
        raise Refused("refused: webhooks are sent over https only")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = resolve(parts.hostname, port)
    connection_class = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = connection_class(
        parts.hostname, port, address, timeout=settings.RALLY_WEBHOOK_TIMEOUT
    )
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read(ANSWER_BYTES).decode("utf-8", "replace")
        return Answer(response.status, text)
    except (http.client.HTTPException, ssl.SSLError) as error:
        raise OSError(f"{type(error).__name__}: {error}") from None
    finally:
        connection.close()
