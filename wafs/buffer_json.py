"""Baileys' ``BufferJSON`` in Python: ``bytes`` <-> ``{"type": "Buffer", "data": "<base64>"}``.

``dumps`` turns ``bytes`` (and ``bytearray``/``memoryview``) anywhere inside a value into
Baileys' Buffer object, as ``BufferJSON.replacer`` does; ``loads`` turns those objects back
into ``bytes``, as ``BufferJSON.reviver`` does, accepting Node's own ``Buffer.toJSON`` form
(``"data"`` as a list of byte values) too.
"""

from __future__ import annotations

import base64
import json
from typing import Any


def _encode_buffer(value: object) -> dict[str, str]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"type": "Buffer", "data": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _decode_buffer(obj: dict[str, Any]) -> Any:
    if obj.get("type") == "Buffer" and "data" in obj and len(obj) == 2:
        data = obj["data"]
        if isinstance(data, str):
            return base64.b64decode(data)
        if isinstance(data, list) and all(isinstance(b, int) and 0 <= b < 256 for b in data):
            return bytes(data)
    return obj


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` with ``bytes`` written as Baileys Buffer objects (compact by default)."""
    kwargs.setdefault("separators", (",", ":"))
    return json.dumps(value, default=_encode_buffer, **kwargs)


def loads(text: str | bytes, **kwargs: Any) -> Any:
    """``json.loads`` with Baileys Buffer objects read back as ``bytes``."""
    return json.loads(text, object_hook=_decode_buffer, **kwargs)
