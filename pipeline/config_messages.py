"""One line per config error: the key path as the user wrote it, the bad value, what is allowed and a
"did you mean" — from pydantic's error records (``config.parse_config`` calls ``format_error``).
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Dict, List, Union, get_args, get_origin

from pydantic import BaseModel

from sluice.components.settings import Clipping, Feature, LrSchedule, _not_allowed


def _tagged(*unions: Any) -> Dict[str, type]:
    """The member models of discriminated unions (``kind: …``) by their tag: pydantic names the tag in an
    error's location (``features.2.numeric.top_k``), where the user wrote no such key."""
    out: Dict[str, type] = {}
    for union in unions:
        for member in get_args(get_args(union)[0]):
            out[get_args(member.model_fields["kind"].annotation)[0]] = member
    return out


UNIONS = {"features": Feature, "lr_schedule": LrSchedule, "clipping": Clipping}
"""The config's discriminated unions by the key that holds them."""
TAGGED = _tagged(*UNIONS.values())

def fields_at(model: type, loc: tuple) -> List[str]:
    """The keys a pydantic model accepts at ``loc`` (used for "did you mean" on unknown keys)."""
    current: Any = model
    dict_key = False  # the previous part was a Dict[str, Model] field: this part is a user's key, not a field
    for part in loc:
        if isinstance(part, int):
            continue
        if dict_key:
            dict_key = False
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {**{f.alias: f for f in current.model_fields.values() if f.alias}, **current.model_fields}
            if part in fields:
                ann = fields[part].annotation
                current = _unwrap(ann)
                dict_key = _is_mapping(ann)
                continue
            if part in TAGGED:
                current = TAGGED[part]
                continue
        return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _is_mapping(ann: Any) -> bool:
    """Dict[str, X] or Optional[Dict[str, X]]: the next part of an error's location is a user's key."""
    if get_origin(ann) is dict:
        return True
    return get_origin(ann) is Union and any(_is_mapping(a) for a in get_args(ann))


def _unwrap(ann: Any) -> Any:
    """Optional[List[X]] -> X, for walking the model tree."""
    for _ in range(4):
        args = getattr(ann, "__args__", None)
        if not args:
            break
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if models:
            return models[0]
        ann = args[0]
    return ann


def _key_path(loc: tuple, raw: Any) -> str:
    """('features', 2, 'numeric', 'top_k') -> 'features[2] (trip_miles).top_k'."""
    out = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            label = ""
            if isinstance(node, list) and part < len(node) and isinstance(node[part], dict):
                item = node[part]
                if "name" in item:
                    label = f" ({item['name']})"
                node = item
            out += f"[{part}]{label}"
            continue
        if part in TAGGED and isinstance(node, dict) and node.get("kind") == part:
            continue  # pydantic's discriminator tag, not a key the user wrote
        out += ("." if out else "") + str(part)
        node = node.get(part) if isinstance(node, dict) else None
    return out or "<top level>"


def format_error(err: Dict[str, Any], raw: Any, root: type) -> str:
    loc = tuple(err.get("loc", ()))
    etype = err.get("type", "")
    if etype == "extra_forbidden":
        key = str(loc[-1])
        parent = _key_path(loc[:-1], raw)
        allowed = fields_at(root, loc[:-1])
        hint = difflib.get_close_matches(key, allowed, n=1)
        where = f"{parent}.{key}" if parent != "<top level>" else key
        msg = f"{where}: unknown key"
        if hint:
            msg += f"; did you mean {hint[0]!r}?"
        elif allowed:
            msg += f" (allowed: {', '.join(sorted(allowed))})"
        return msg
    where = _key_path(loc, raw)
    value = err.get("input")
    text = err.get("msg", "invalid").removeprefix("Value error, ")
    if etype == "missing":
        return f"{where}: required key is missing"
    holder = next((p for p in reversed(loc) if isinstance(p, str) and p in UNIONS), None)
    tags = sorted(_tagged(UNIONS[holder])) if holder else []
    if etype == "union_tag_invalid":
        got = value.get("kind") if isinstance(value, dict) else value
        return _not_allowed(f"{where}.kind", got, tags)
    if etype == "union_tag_not_found":
        return f"{where}.kind: required key is missing (allowed: {', '.join(tags)})"
    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        allowed = [a.strip().strip("'") for a in expected.replace(" or ", ",").split(",") if a.strip()]
        return _not_allowed(where, value, allowed)
    if etype == "value_error":
        if where == "<top level>":
            return text
        # A model validator's message that starts with its own key ("derive: …") extends the path.
        return f"{where}.{text}" if re.match(r"^[\w.\[\]() ]+: ", text) else f"{where}: {text}"
    if isinstance(value, (dict, list)) or value is None:
        return f"{where}: {text}" if where != "<top level>" else text
    return f"{where}: {value!r} is invalid: {text}"
