"""How the model's values are made and encoded quickly (pure): the planner makes and encodes hundreds of
thousands of them a night, so the generic ways cost more than the values themselves."""

from __future__ import annotations

import dataclasses
import json
import json.encoder
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


def json_encoder(*, sort_keys: bool = False) -> Callable[[Any], str]:
    """`json.dumps(value, default=str, sort_keys=...)` for lists and dicts, with the encoder made once.

    JSONEncoder.encode builds a new C encoder on every call, which costs more than encoding one account or
    one change; the planner encodes hundreds of thousands of them. This is the encoder JSONEncoder itself
    builds (same options, same output), made once. Without the C accelerator it is JSONEncoder.encode.
    Values are never cyclic (accounts, changes), so there is no cycle check.
    """
    options = json.JSONEncoder(default=str, sort_keys=sort_keys)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return options.encode
    encode = make(None, options.default, json.encoder.encode_basestring_ascii, None, options.key_separator,
                  options.item_separator, options.sort_keys, options.skipkeys, options.allow_nan)

    def encoded(value: Any) -> str:
        return "".join(encode(value, 0))

    return encoded


def slot_setting_init(cls: type[_T]) -> type[_T]:
    """The frozen slotted dataclass `cls`, given an __init__ that fills its slots through their descriptors.

    A frozen dataclass's own __init__ sets each field with object.__setattr__, which looks the name up again
    for every field of every value: the feed makes a Person per row and the planner a DesiredAccount per
    person and directory, hundreds of thousands a night, and that lookup was most of their cost (12 fields:
    2.9 us against 1.1 us). Same parameters, defaults and order as the generated __init__; fields with
    init=False, keyword-only fields and __post_init__ are not supported and refused here, at import.
    """
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if hasattr(cls, "__post_init__") or any(not f.init or f.kw_only for f in fields):
        raise TypeError(f"{cls.__name__}: only plain fields can be set through slots")
    namespace: dict[str, Any] = {"__object_new": object.__new__}
    params, body = [], []
    for n, f in enumerate(fields):
        namespace[f"__set{n}"] = getattr(cls, f.name).__set__
        if f.default_factory is not dataclasses.MISSING:
            namespace[f"__factory{n}"] = f.default_factory
            params.append(f"{f.name}=__missing")
            body.append(f"    __set{n}(self, __factory{n}() if {f.name} is __missing else {f.name})")
        elif f.default is not dataclasses.MISSING:
            namespace[f"__default{n}"] = f.default
            params.append(f"{f.name}=__default{n}")
            body.append(f"    __set{n}(self, {f.name})")
        else:
            params.append(f.name)
            body.append(f"    __set{n}(self, {f.name})")
    namespace["__missing"] = dataclasses.MISSING
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)  # noqa: S102 - code made here from the class's own field names, as dataclasses does
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
