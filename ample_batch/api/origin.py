"""Where the API key may be sent: a base URL checked before anything goes out, and every href
resolved against it, refused when it points at another origin.

    >>> origin = Origin("https://api.amplemarket.com/")
    >>> origin.base_url
    'https://api.amplemarket.com'
    >>> origin.url_for("/email-validations/v1?page[after]=a")
    URL('https://api.amplemarket.com/email-validations/v1?page[after]=a')
    >>> origin.url_for("https://evil.example/x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ample_batch.errors.UnsafeLink: refusing to follow a link to another origin ...
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from yarl import URL

from ..errors import InputError, UnsafeLink


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, the only hosts allowed over plain http."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str) -> str:
    """Return the base URL without a trailing slash, or raise InputError if it is unsafe.

    check_base_url("https://api.amplemarket.com/")   # 'https://api.amplemarket.com'
    check_base_url("http://api.example.com")         # InputError: refusing plain http
    """
    parts = urlsplit(base_url)
    if "@" in parts.netloc:
        # Never echo the URL: the part before the @ is a password.
        raise InputError(
            "refusing a --base-url with a user name or password in it; "
            "the API key is the only credential to give (AMPLEMARKET_API_KEY)"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"bad --base-url {base_url!r}: use https://host[:port]")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise InputError(
            f"refusing plain http to {parts.hostname}: the API key would travel unencrypted; "
            "use https:// (plain http is allowed only for loopback hosts)"
        )
    if parts.query or parts.fragment:
        raise InputError(f"bad --base-url {base_url!r}: no query or fragment allowed")
    return base_url.rstrip("/")


class Origin:
    """The checked base URL of the API, and the only origin its hrefs may lead to."""

    def __init__(self, base_url: str) -> None:
        self.base_url = check_base_url(base_url)
        self._parts = urlsplit(self.base_url)

    def __repr__(self) -> str:
        return f"Origin({self.base_url!r})"

    def url_for(self, href: str) -> URL:
        """The absolute URL of an API href; refuses any other origin (the key goes with it)."""
        parts = urlsplit(href)
        if parts.scheme or parts.netloc:
            same = (
                parts.scheme == self._parts.scheme
                and parts.hostname == self._parts.hostname
                and parts.port == self._parts.port
            )
            if not same:
                raise UnsafeLink(
                    f"refusing to follow a link to another origin ({parts.scheme}://"
                    f"{parts.netloc}): the API key is only sent to {self.base_url}"
                )
            return URL(href, encoded=True)
        if not href.startswith("/"):
            href = "/" + href
        # Hrefs are used verbatim: cursors carry unencoded brackets the server expects back.
        return URL(self.base_url + href, encoded=True)


__all__ = ["Origin", "check_base_url", "is_loopback"]
