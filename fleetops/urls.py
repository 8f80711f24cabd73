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
