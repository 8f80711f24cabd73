"""URLs fit for logs: broker and database URLs carry passwords, and logs are read widely."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "***"
# For input urllib.parse cannot take, or would read differently from the person who wrote it:
# everything from "://" to the last "@" may be a password.
_USERINFO = re.compile(r"(?<=://).*@", re.DOTALL)


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``; user, host, port, path and query kept.

    A URL without a password comes back unchanged. Never raises: input that cannot be parsed
    cleanly comes back with everything between ``://`` and the last ``@`` masked.
    """
    try:
        return _redact(url)
    except Exception:  # e.g. "redis://u:pw@[::1" (an unclosed IPv6 bracket), bytes, None
        return _mask_userinfo(url)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" not in netloc:
        # An unencoded "/", "?" or "#" in a password ends the netloc early and leaves the rest
        # of the password before an "@" further on: "redis://u:pa/ss@host". A netloc that is
        # a plain host or host:port is not that; no netloc at all ("sqlite:///a@b.db") holds
        # no password.
        if netloc and "@" in url[url.index(netloc) + len(netloc) :]:
            _host, colon, port = netloc.rpartition(":")
            if colon and not (port.isdigit() and len(port) <= 5):
                return _mask_userinfo(url)
        return url
    userinfo, _, hostport = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not colon or not password:
        return url
    # urlsplit drops tabs and newlines before splitting, so its netloc may not be the text in
    # ``url``: replace only a netloc found as it is, else mask the raw text.
    if netloc not in url:
        return _mask_userinfo(url)
    # The first occurrence is the netloc itself: the scheme before it cannot contain "@".
    return url.replace(netloc, f"{user}:{MASK}@{hostport}", 1)


def _mask_userinfo(url: object) -> str:
    text = url if isinstance(url, str) else repr(url)
    return _USERINFO.sub(MASK + "@", text, count=1)


# The user information of each URL in a list (FLEETOPS_APPS' "a=redis://u:pw@h,b=amqp://..."
# or its JSON form, a Sentinel "sentinel://u:pw@h1;sentinel://u:pw@h2"): up to the last "@"
# before the next "://". Not up to a separator: a password may hold ",", ";", quotes, braces
# and spaces. Masking too much (an "@" in a later entry's name) is the safe mistake.
_EACH_USERINFO = re.compile(r"(?<=://)(?:(?!://).)*@", re.DOTALL)
_ONE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def redact_urls(text: str) -> str:
    """``text`` that may hold several URLs, each without its password. One URL is
    :func:`redact_url`'s (the user kept); several lose their whole user information."""
    if text.count("://") == 1 and _ONE_URL.match(text):
        return redact_url(text)
    return _EACH_USERINFO.sub(MASK + "@", text)
