"""POST a JSON body to a webhook; failures are reported, never raised (alerts must not fail work)."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

log = logging.getLogger(__name__)


def post_json(url: str, body: dict[str, Any], timeout: float) -> bool:
    request = urllib.request.Request(
        url,
        data=json.dumps(body, default=str).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 300
    except Exception as exc:
        log.warning("webhook POST failed: %s", type(exc).__name__)
        return False
