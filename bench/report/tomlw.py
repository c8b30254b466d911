"""A tiny TOML writer for benchmark temp configs (the stdlib only reads TOML).

Handles what config.toml uses: nested tables, str, int, float, bool and lists
of those.
"""
from __future__ import annotations

import json
import math


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("TOML float must be finite here")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(doc: dict, prefix: str = "") -> str:
    scalars = {k: v for k, v in doc.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in doc.items() if isinstance(v, dict)}
    out = []
    if prefix and scalars:
        out.append(f"[{prefix}]")
    for k, v in scalars.items():
        out.append(f"{k} = {_value(v)}")
    if out:
        out.append("")
    for k, v in tables.items():
        name = f"{prefix}.{k}" if prefix else k
        if not any(not isinstance(x, dict) for x in v.values()):
            out.append(dumps(v, name))  # only sub-tables: no header needed
        else:
            out.append(dumps(v, name))
    return "\n".join(out)
