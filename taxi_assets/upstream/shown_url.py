"""A source URL as logs, errors, metadata and the raw manifests show it: no credentials.

A private mirror may take HTTP basic auth in its URL (``https://USER:PASSWORD@HOST/...``,
or a token as the user name, ``https://TOKEN@HOST/...``; requests sends either as an
``Authorization`` header). The user information is masked wherever the URL is written
down; requests are still sent to the URL as configured.
"""

from __future__ import annotations

import re

MASK = "***"
# A scheme, then the user information: everything before the host's last "@" (a password
# may hold "@" unescaped), which ends at the first "/", "?", "#" or blank.
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def shown_url(url: str) -> str:
    """``url`` with its user information (user name and password) replaced by ``***``;
    for a text, every URL in it."""
    return _USERINFO.sub(lambda match: f"{match.group(1)}{MASK}@", url)
