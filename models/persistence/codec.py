"""A restricted object-graph codec: model state as JSON plus raw binary blobs, never pickle.

Snapshots travel through Redis, disk and MLflow, which other parties may be able to write;
unpickling such bytes runs whatever code they name. This codec only ever builds what its
``TypeRegistry`` allows: JSON scalars, bytes, lists, tuples, dicts, ordered dicts, deques,
numpy arrays and scalars of numeric dtypes (raw bytes with dtype and shape), XGBoost
boosters (XGBoost's own UBJSON model format), and the registered classes, enums, named
tuples and functions. Registered plain classes are rebuilt with ``cls.__new__`` and their
``__dict__`` set, so no ``__reduce__``/``__setstate__`` hook ever runs; registered
dataclasses through their constructor, so their own validation (``__post_init__``) runs
on decoded data too; classes whose state is not plain data through an ``Adapter``.
Anything else refuses to encode, naming its type and the attribute path to it.

Encoded form: a JSON document ``{"root": node, "blobs": [length, ...]}``, then the blobs. A node is
a JSON null, boolean, integer, string or finite float, or an object ``{"t": tag, ...}``:
``float`` (non-finite ``v``), ``bytes`` (blob ``b``), ``list``/``tuple``/``deque``/
``dict``/``odict`` (``v``; dict items as ``[key, value]`` pairs; deque ``maxlen``), ``nd``
(``dtype``, ``shape``, blob ``b``), ``np`` (numpy scalar: ``dtype``, ``v``), ``booster``
(blob ``b``), ``obj``/``dc``/``enum``/``nt``/``fn``/``ad`` (registered name ``c``, state
``v``) and ``ref`` (``i``: the i-th shared object, counted in encoding order).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import struct
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

_SCALARS = (bool, int, str, type(None))
_DTYPES = frozenset(
    np.dtype(t).str
    for t in (
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
    )
)
_LENGTH = struct.Struct(">I")


class EncodeError(TypeError):
    """State holds something the registry does not allow; ``path`` says where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []

    def __str__(self) -> str:
        where = "".join(self.path).lstrip(".") or "the top level"
        return f"cannot encode {where}: {self.reason}"


class DecodeError(ValueError):
    """The encoded graph is malformed or names a type this build does not allow."""


@dataclass(frozen=True, slots=True)
class Adapter:
    """How a class whose attributes are not plain data travels: its ``state`` is plain
    data and ``build`` makes a new instance from it (our code, never the payload's)."""

    cls: type
    state: Callable[[Any], Any]
    build: Callable[[Any], Any]


def qualified_name(item: type | Callable[..., Any]) -> str:
    return f"{item.__module__}.{item.__qualname__}"


class TypeRegistry:
    """The classes, adapters and functions an encoded graph may name, by qualified name."""

    def __init__(
        self,
        classes: Iterable[type] = (),
        adapters: Iterable[Adapter] = (),
        functions: Iterable[Callable[..., Any]] = (),
    ) -> None:
        self.classes: dict[str, type] = {}
        self.adapters = {qualified_name(a.cls): a for a in adapters}
        self.functions = {qualified_name(f): f for f in functions}
        self._function_names = {id(f): name for name, f in self.functions.items()}
        self.register(*classes)

    def register(self, *classes: type) -> None:
        """Allow ``classes`` too (tests' own learners; extensions outside this package)."""
        self.classes |= {qualified_name(c): c for c in classes}

    def encode(self, value: object) -> bytes:
        """``value``'s graph as bytes: the JSON document's length (u32, big-endian), the
        document, then the blobs; ``EncodeError`` if the graph holds a refused type."""
        encoder = _Encoder(self)
        root = encoder.node(value)
        document = {"root": root, "blobs": [len(b) for b in encoder.blobs]}
        text = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
        return b"".join([_LENGTH.pack(len(text)), text, *encoder.blobs])

    def decode(self, data: bytes) -> Any:
        """The graph encoded by ``encode``; ``DecodeError`` for anything not allowed."""
        try:
            (length,) = _LENGTH.unpack_from(data)
            document = json.loads(data[_LENGTH.size : _LENGTH.size + length])
            blobs, position = [], _LENGTH.size + length
            for size in _of_type(document["blobs"], list):
                if type(size) is not int or size < 0 or position + size > len(data):
                    raise DecodeError(f"blob of {size!r} bytes past the end of the data")
                blobs.append(data[position : position + size])
                position += size
            return _Decoder(self, blobs).node(document["root"])
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, RecursionError, struct.error) as exc:
            raise DecodeError(f"malformed model state: {type(exc).__name__}: {exc}") from exc


class _Encoder:
    def __init__(self, registry: TypeRegistry) -> None:
        self.registry = registry
        self.blobs: list[bytes] = []
        self._shared: dict[int, int] = {}
        self._pinned: list[object] = []  # keeps ids unique while encoding
        self._open: set[int] = set()  # immutable kinds being encoded: a cycle through one

    def node(self, value: object) -> Any:
        if type(value) in _SCALARS:
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {"t": "float", "v": repr(value)}
        if isinstance(value, enum.Enum):
            return {"t": "enum", "c": self._registered(type(value)), "v": value.value}
        if callable(value) and id(value) in self.registry._function_names:
            return {"t": "fn", "c": self.registry._function_names[id(value)]}
        if isinstance(value, np.generic):
            return self._numpy_scalar(value)
        if id(value) in self._shared:
            if id(value) in self._open:
                raise EncodeError(f"cycle through immutable {type(value).__qualname__}")
            return {"t": "ref", "i": self._shared[id(value)]}
        self._shared[id(value)] = len(self._shared)
        self._pinned.append(value)
        return self._shared_node(value)

    def _shared_node(self, value: Any) -> dict[str, Any]:
        kind = type(value)
        if kind is bytes:
            return {"t": "bytes", "b": self._blob(value)}
        if kind is np.ndarray:
            return self._array(value)
        if kind is xgb.Booster:
            return {"t": "booster", "b": self._blob(bytes(value.save_raw("ubj")))}
        if kind is list:
            return {"t": "list", "v": self._items(value)}
        if kind is deque:
            return {"t": "deque", "v": self._items(value), "maxlen": value.maxlen}
        if kind in (dict, OrderedDict):
            pairs = [[self._at("{key}", k), self._at(f"[{k!r}]", v)] for k, v in value.items()]
            return {"t": "dict" if kind is dict else "odict", "v": pairs}
        self._open.add(id(value))
        try:
            return self._immutable_or_object(value)
        finally:
            self._open.discard(id(value))

    def _immutable_or_object(self, value: Any) -> dict[str, Any]:
        kind = type(value)
        if kind is tuple:
            return {"t": "tuple", "v": self._items(value)}
        name = qualified_name(kind)
        if name in self.registry.adapters:
            state = self.registry.adapters[name].state(value)
            return {"t": "ad", "c": name, "v": self._at(".<adapted>", state)}
        self._registered(kind)
        if isinstance(value, tuple):  # a named tuple
            return {"t": "nt", "c": name, "v": self._items(value)}
        if dataclasses.is_dataclass(value):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return {"t": "dc", "c": name, "v": self._attributes(fields)}
        if not hasattr(value, "__dict__"):
            raise EncodeError(f"{name} keeps no __dict__: list it as a dataclass or an adapter")
        self._open.discard(id(value))  # rebuilt before its attributes: cycles are fine
        return {"t": "obj", "c": name, "v": self._attributes(vars(value))}

    def _registered(self, kind: type) -> str:
        name = qualified_name(kind)
        if self.registry.classes.get(name) is not kind:
            raise EncodeError(
                f"{name} is not in the snapshot registry (models/persistence/allowed_types.py)"
            )
        return name

    def _items(self, values: Iterable[Any]) -> list[Any]:
        return [self._at(f"[{i}]", v) for i, v in enumerate(values)]

    def _attributes(self, state: dict[str, Any]) -> dict[str, Any]:
        return {name: self._at(f".{name}", value) for name, value in state.items()}

    def _at(self, step: str, value: object) -> Any:
        """Encode ``value``, reached by ``step``; a refusal's path gains that step."""
        try:
            return self.node(value)
        except EncodeError as exc:
            exc.path.insert(0, step)
            raise

    def _blob(self, data: bytes) -> int:
        self.blobs.append(data)
        return len(self.blobs) - 1

    def _array(self, array: np.ndarray) -> dict[str, Any]:
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype.str not in _DTYPES:
            raise EncodeError(f"numpy array of dtype {array.dtype} (numeric dtypes only)")
        data = np.ascontiguousarray(array, dtype).tobytes()
        return {"t": "nd", "dtype": dtype.str, "shape": list(array.shape), "b": self._blob(data)}

    def _numpy_scalar(self, value: np.generic) -> dict[str, Any]:
        if value.dtype.str not in _DTYPES:
            raise EncodeError(f"numpy scalar of dtype {value.dtype} (numeric dtypes only)")
        return {"t": "np", "dtype": value.dtype.str, "v": self.node(value.item())}


class _Decoder:
    def __init__(self, registry: TypeRegistry, blobs: list[bytes]) -> None:
        self.registry = registry
        self.blobs = blobs
        self._shared: list[Any] = []

    def node(self, node: Any) -> Any:
        if node is None or type(node) in (bool, int, float, str):
            return node
        if type(node) is not dict:
            raise DecodeError(f"unexpected {type(node).__name__} node")
        tag = node["t"]
        if tag == "float":
            return float(_one_of(node["v"], ("nan", "inf", "-inf")))
        if tag == "enum":
            return self._class(node["c"], enum.Enum)(node["v"])
        if tag == "fn":
            return _lookup(self.registry.functions, node["c"], "function")
        if tag == "np":
            return np.array(self._scalar(node["v"]), _dtype(node["dtype"]))[()]
        if tag == "ref":
            value = self._shared[node["i"]]
            if value is _UNDER_CONSTRUCTION:
                raise DecodeError("reference to an object inside itself")
            return value
        index = len(self._shared)
        self._shared.append(_UNDER_CONSTRUCTION)
        value = self._shared_node(tag, node, index)
        self._shared[index] = value
        return value

    def _shared_node(self, tag: str, node: dict[str, Any], index: int) -> Any:
        if tag == "bytes":
            return self._blob(node["b"])
        if tag == "nd":
            return self._array(node)
        if tag == "booster":
            booster = xgb.Booster()
            booster.load_model(bytearray(self._blob(node["b"])))
            return booster
        if tag in ("list", "deque", "dict", "odict", "obj"):
            return self._mutable(tag, node, index)
        if tag == "tuple":
            return tuple(self._items(node["v"]))
        if tag == "nt":
            return self._class(node["c"], tuple)(*self._items(node["v"]))
        if tag == "dc":
            return self._class(node["c"])(**self._attributes(node["v"]))
        if tag == "ad":
            return _lookup(self.registry.adapters, node["c"], "adapter").build(self.node(node["v"]))
        raise DecodeError(f"unknown node tag {tag!r}")

    def _mutable(self, tag: str, node: dict[str, Any], index: int) -> Any:
        """Containers and plain objects exist before their contents (shared or cyclic)."""
        value: Any
        if tag == "list":
            value = self._shared[index] = []
            value.extend(self._items(node["v"]))
        elif tag == "deque":
            value = self._shared[index] = deque(maxlen=_optional_int(node["maxlen"]))
            value.extend(self._items(node["v"]))
        elif tag in ("dict", "odict"):
            value = self._shared[index] = {} if tag == "dict" else OrderedDict()
            for key_node, item_node in node["v"]:
                key = self.node(key_node)  # keys first, as encoded (shared references)
                value[key] = self.node(item_node)
        else:
            cls = self._class(node["c"])
            value = self._shared[index] = cls.__new__(cls)
            value.__dict__.update(self._attributes(node["v"]))
        return value

    def _class(self, name: str, base: type = object) -> Any:
        cls = _lookup(self.registry.classes, name, "class")
        if not issubclass(cls, base):
            raise DecodeError(f"{name} is not a {base.__name__}")
        return cls

    def _items(self, nodes: list[Any]) -> list[Any]:
        return [self.node(n) for n in _of_type(nodes, list)]

    def _attributes(self, nodes: dict[str, Any]) -> dict[str, Any]:
        return {str(k): self.node(v) for k, v in _of_type(nodes, dict).items()}

    def _scalar(self, node: Any) -> Any:
        value = self.node(node)
        if not isinstance(value, (bool, int, float)):
            raise DecodeError("numpy scalar of a non-numeric value")
        return value

    def _blob(self, index: int) -> bytes:
        if type(index) is not int or not 0 <= index < len(self.blobs):
            raise DecodeError(f"no blob {index!r}")
        return self.blobs[index]

    def _array(self, node: dict[str, Any]) -> np.ndarray:
        dtype = _dtype(node["dtype"])
        shape = tuple(_of_type(node["shape"], list))
        if not all(type(n) is int and n >= 0 for n in shape):
            raise DecodeError(f"bad array shape {shape!r}")
        data = self._blob(node["b"])
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise DecodeError(f"array of shape {shape} and dtype {dtype} with {len(data)} bytes")
        return np.frombuffer(data, dtype).reshape(shape).copy()


_UNDER_CONSTRUCTION = object()


def _lookup(table: dict[str, Any], name: object, what: str) -> Any:
    if type(name) is not str or name not in table:
        raise DecodeError(f"{what} {name!r} is not in this build's snapshot registry")
    return table[name]


def _dtype(text: object) -> np.dtype:
    if type(text) is not str or text not in _DTYPES:
        raise DecodeError(f"dtype {text!r} is not allowed (numeric dtypes only)")
    return np.dtype(text)


def _one_of(value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise DecodeError(f"{value!r} is not one of {allowed}")
    return str(value)


def _optional_int(value: object) -> int | None:
    if value is not None and type(value) is not int:
        raise DecodeError(f"expected an integer, got {value!r}")
    return value


def _of_type(value: Any, kind: type) -> Any:
    if type(value) is not kind:
        raise DecodeError(f"expected a {kind.__name__}, got {type(value).__name__}")
    return value
