"""A source URL as logs, errors, metadata and the raw manifests show it: no credentials.

A private mirror may take HTTP basic auth in its URL (``https://USER:PASSWORD@HOST/...``,
or a token as the user name, ``https://TOKEN@HOST/...``; requests sends either as an
``Authorization`` header). The user information is masked wherever the URL is written
down; requests are still sent to the URL as configured.
"""

from __future__ import annotations

import re

MASK = "***"
# A scheme, then the user information: everything up to the last "@" before a blank. A
# password may hold "@", "/", "?" or "#" unescaped (a base64 token holds "/"): stopping at
# the first "/" left such a password whole. A path holding "@" is masked too: more than
# the user information, never less.
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)\S*@")


def shown_url(url: str) -> str:
    """``url`` with its user information (user name and password) replaced by ``***``;
    for a text, every URL in it."""
    return _USERINFO.sub(lambda match: f"{match.group(1)}{MASK}@", url)
