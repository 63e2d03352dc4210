"""The one place that hides secrets in text: logs, exception messages, command-line output.

Standard library only, so the core and the command line can use it without aiohttp.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "redact"]

REDACTED = "<redacted>"

_SECRET_PATTERNS = (
    # Connection-string values: an account key (base64, may end in '='), a whole SAS token.
    re.compile(r"(?i)\b(AccountKey\s*=\s*)[^;\s'\"]+"),
    re.compile(r"(?i)\b(SharedAccessSignature\s*=\s*)[^;\s'\"]+"),
    # The signature of a SAS token in a URL or query string.
    re.compile(r"(?i)\b(sig=)[^&;\s'\"]+"),
    # Authorization header values.
    re.compile(r"(?i)\b(SharedKey\s+[^:\s]+:)\S+"),
    re.compile(r"(?i)\b(Bearer\s+)\S+"),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Hide account keys, SAS tokens and signatures, SharedKey and bearer authorizations.

    Each of ``secrets`` (e.g. a connection string given on the command line, whatever its
    form) is hidden too, longest first; strings shorter than 8 characters are left alone, as
    hiding them would garble the text without protecting anything.
    """
    for secret in sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(rf"\1{REDACTED}", text)
    return text
