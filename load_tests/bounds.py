"""The loop bounds of every load test: a run time that is required and capped, a user cap, a request cap, and
a target that must be this machine unless the caller explicitly allows another host.

Stdlib only: imported by the runner (which must not import locust: gevent patches the process) and by the
locustfile (which enforces the same bounds when run with plain `locust -f`).
"""
from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

MAX_USERS = 200                 # concurrent users (closed model) or in-flight slots (open model)
MAX_RUN_TIME_S = 600.0          # 10 minutes: a load test never runs unbounded
MAX_REQUESTS = 1_000_000        # hard ceiling on requests in one run, whatever the rate
DEFAULT_MAX_REQUESTS = 200_000
MAX_ARRIVAL_RATE = 5_000.0      # requests/s in the open model

_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?$")


class BoundsError(ValueError):
    """A load-test setting outside its bounds; the message names the option and the limit."""


def parse_run_time(text: str, option: str = "--run-time") -> float:
    """'15s', '2m', '1m30s', '1h' or plain seconds -> seconds, within (0, MAX_RUN_TIME_S]."""
    match = _DURATION.match(text.strip()) if text else None
    if not match or not any(match.groupdict().values()):
        raise BoundsError(f"{option}: {text!r} is not a duration like 15s, 2m or 1m30s")
    seconds = int(match["h"] or 0) * 3600 + int(match["m"] or 0) * 60 + float(match["s"] or 0)
    if seconds <= 0:
        raise BoundsError(f"{option}: must be more than 0 seconds, got {text!r}")
    if seconds > MAX_RUN_TIME_S:
        raise BoundsError(f"{option}: {text!r} is above the limit of {MAX_RUN_TIME_S:.0f} s")
    return seconds


def check_count(value: int, option: str, maximum: int | float, minimum: int | float = 1) -> None:
    if not minimum <= value <= maximum:
        raise BoundsError(f"{option}: must be between {minimum} and {maximum}, got {value}")


def is_loopback_host(host: str) -> bool:
    """True when every address `host` resolves to is a loopback address (127.0.0.0/8 or ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)  # /etc/hosts for localhost: no network needed
    except socket.gaierror:
        return False
    addresses = {info[4][0].split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def check_host(url: str, allow_remote: bool = False) -> str:
    """Validate the target URL; non-loopback hosts are refused unless `allow_remote`. Returns the URL."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise BoundsError(f"--host: {url!r} is not an http(s) URL like http://127.0.0.1:8000")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise BoundsError(f"--host: give the service's base URL only, without a path, got {url!r}")
    if not allow_remote and not is_loopback_host(parts.hostname):
        raise BoundsError(
            f"--host: {parts.hostname} is not a loopback address (127.0.0.0/8, ::1, localhost); load tests "
            "target this machine unless --allow-remote-host is given for a deployment you own"
        )
    return url.rstrip("/")
