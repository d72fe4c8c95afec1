"""The field-type whitelist behind events: checked when a class is declared and on every value.

An event class may only declare fields of these types: ``str``, ``int``, ``float``, ``bool``,
``None``, ``Literal`` of strings, ``tuple[T, ...]`` of an allowed type, a record class (a
frozen dataclass declared with :func:`record`), and unions of those. A class with any other
annotation (``dict``, ``Any``, ``object``, ``bytes``...) fails at import time, so no event can
carry a free-form payload, and every value is checked against its declared type when the event
is built, so nothing else (a ``Secret``, a token object, a dict) can slip through at run time.

Each allowed type compiles to a :class:`Codec`: a check that also normalises (lists become
tuples, ints become floats where a float is declared), an encoder to JSON-able values and a
decoder back.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union, dataclass_transform

from ..protocol import SecretValue
from .errors import CredentialRefused, EventTypeError

__all__ = ["Codec", "FieldSpec", "Spec", "compile_spec", "is_secret", "record", "spec_of"]

T = TypeVar("T")


class _Mismatch(Exception):
    """Internal: a value does not fit; carries the offending value's type name only."""

    def __init__(self, got: str, *, secret: bool = False, path: str = "") -> None:
        super().__init__(got)
        self.got = got
        self.secret = secret
        self.path = path


def is_secret(value: object) -> bool:
    """Whether ``value`` looks like a wrapped credential.

    Every credential wrapper derives from :class:`~radical.orbit.protocol.SecretValue` (the
    daemon's ``Secret`` does); any other object exposing ``reveal()`` is refused as well.
    """
    return isinstance(value, SecretValue) or callable(getattr(type(value), "reveal", None))


def _mismatch(value: object) -> _Mismatch:
    return _Mismatch(type(value).__name__, secret=is_secret(value))


@dataclass(frozen=True, slots=True)
class Codec:
    expected: str
    check: Callable[[Any], Any]
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    # Exact types accepted as they are (no normalisation, no value check, JSON-able as is):
    # validation and encoding skip the calls for them. None: always take the full path.
    plain: frozenset[type] | None = None


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    codec: Codec
    has_default: bool


@dataclass(frozen=True, slots=True)
class Spec:
    """The compiled fields of one event or record class."""

    name: str
    fields: tuple[FieldSpec, ...]

    def validate(self, obj: object) -> None:
        for field in self.fields:
            value = getattr(obj, field.name)
            plain = field.codec.plain
            if plain is not None and type(value) in plain:
                continue
            try:
                normalised = field.codec.check(value)
            except _Mismatch as exc:
                where = field.name + exc.path
                error = CredentialRefused if exc.secret else EventTypeError
                raise error(
                    kind=self.name, field=where, expected=field.codec.expected, got=exc.got
                ) from None
            if normalised is not value:
                object.__setattr__(obj, field.name, normalised)

    def encode(self, obj: object, *, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self.fields:
            if f.name in skip:
                continue
            value = getattr(obj, f.name)
            plain = f.codec.plain
            out[f.name] = (
                value if plain is not None and type(value) in plain else f.codec.encode(value)
            )
        return out

    def decode_kwargs(self, data: dict[str, Any]) -> dict[str, Any]:
        names = {f.name for f in self.fields}
        unknown = set(data) - names
        if unknown:
            raise EventTypeError(
                kind=self.name, field=sorted(unknown)[0], expected="a declared field", got="?"
            )
        kwargs: dict[str, Any] = {}
        for field in self.fields:
            if field.name in data:
                kwargs[field.name] = field.codec.decode(data[field.name])
            elif not field.has_default:
                raise EventTypeError(
                    kind=self.name, field=field.name, expected="present", got="missing"
                )
        return kwargs


_SPECS: dict[type, Spec] = {}


def spec_of(cls: type) -> Spec:
    return _SPECS[cls]


def _identity(value: T) -> T:
    return value


def _exact(tp: type, expected: str) -> Codec:
    def check(value: Any) -> Any:
        if type(value) is not tp:
            raise _mismatch(value)
        return value

    return Codec(expected, check, _identity, _identity, frozenset({tp}))


def _float_codec() -> Codec:
    def check(value: Any) -> Any:
        cls = type(value)
        if cls is float:
            return value
        if cls is int:
            return float(value)
        raise _mismatch(value)

    return Codec("a float", check, _identity, float, frozenset({float}))


def _none_codec() -> Codec:
    def check(value: Any) -> Any:
        if value is not None:
            raise _mismatch(value)
        return value

    return Codec("None", check, _identity, _identity, frozenset({type(None)}))


def _literal_codec(values: tuple[Any, ...]) -> Codec:
    allowed = frozenset(values)
    expected = "one of " + ", ".join(repr(v) for v in values)

    def check(value: Any) -> Any:
        if type(value) is not str:
            raise _mismatch(value)
        if value not in allowed:
            # The value itself stays out of the message: it may be a misplaced secret.
            raise _Mismatch("str outside the allowed values")
        return value

    return Codec(expected, check, _identity, check)


def _tuple_codec(item: Codec) -> Codec:
    def check(value: Any) -> Any:
        if type(value) not in (tuple, list):
            raise _mismatch(value)
        out = []
        changed = type(value) is not tuple
        for i, element in enumerate(value):
            try:
                normalised = item.check(element)
            except _Mismatch as exc:
                raise _Mismatch(exc.got, secret=exc.secret, path=f"[{i}]{exc.path}") from None
            changed = changed or normalised is not element
            out.append(normalised)
        return tuple(out) if changed else value

    def encode(value: tuple[Any, ...]) -> list[Any]:
        return [item.encode(v) for v in value]

    def decode(value: list[Any]) -> tuple[Any, ...]:
        return tuple(item.decode(v) for v in value)

    return Codec(f"a tuple of {item.expected}", check, encode, decode)


def _record_codec(cls: type) -> Codec:
    spec = _SPECS[cls]

    def check(value: Any) -> Any:
        if type(value) is not cls:
            raise _mismatch(value)
        return value  # records validate themselves when built

    def encode(value: Any) -> dict[str, Any]:
        return spec.encode(value)

    def decode(value: dict[str, Any]) -> Any:
        return cls(**spec.decode_kwargs(value))

    return Codec(f"a {cls.__name__}", check, encode, decode)


def _union_codec(options: list[Codec], records: list[type]) -> Codec:
    expected = " or ".join(o.expected for o in options)

    def check(value: Any) -> Any:
        for option in options:
            try:
                return option.check(value)
            except _Mismatch:
                continue
        raise _mismatch(value)

    def encode(value: Any) -> Any:
        for option in options:
            try:
                option.check(value)
            except _Mismatch:
                continue
            return option.encode(value)
        raise _mismatch(value)

    # Records in a union are told apart by their field names, so a JSON object decodes to the
    # one record whose required fields it has and which declares all of its keys.
    record_fields = [
        (
            cls,
            frozenset(f.name for f in _SPECS[cls].fields),
            frozenset(f.name for f in _SPECS[cls].fields if not f.has_default),
        )
        for cls in records
    ]

    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            keys = frozenset(value)
            for cls, every, required in record_fields:
                if required <= keys <= every:
                    return cls(**_SPECS[cls].decode_kwargs(value))
            raise EventTypeError(kind="record", field="?", expected=expected, got="dict")
        for option in options:
            try:
                return option.check(option.decode(value))
            except (_Mismatch, TypeError, ValueError):
                continue
        raise EventTypeError(kind="value", field="?", expected=expected, got=type(value).__name__)

    plains = [o.plain for o in options]
    plain = None if any(p is None for p in plains) else frozenset().union(*plains)  # type: ignore[arg-type]
    return Codec(expected, check, encode, decode, plain)


def _compile(tp: Any, owner: str, name: str) -> Codec:
    if tp is str:
        return _exact(str, "a str")
    if tp is int:
        return _exact(int, "an int")
    if tp is bool:
        return _exact(bool, "a bool")
    if tp is float:
        return _float_codec()
    if tp is type(None) or tp is None:
        return _none_codec()
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal and all(type(a) is str for a in args):
        return _literal_codec(args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _tuple_codec(_compile(args[0], owner, name))
    if origin in (Union, types.UnionType):
        options = [_compile(a, owner, name) for a in args]
        records = [a for a in args if isinstance(a, type) and a in _SPECS]
        return _union_codec(options, records)
    if isinstance(tp, type) and tp in _SPECS:
        return _record_codec(tp)
    raise TypeError(
        f"{owner}.{name}: type {tp!r} is not allowed in ledger events; use str, int, float, "
        "bool, None, Literal[str...], tuple[T, ...], a @record class or a union of those"
    )


def compile_spec(cls: type, *, name: str, skip: frozenset[str] = frozenset()) -> Spec:
    """Check ``cls``'s field annotations against the whitelist and remember its codecs."""
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__} must be a frozen dataclass")
    hints = typing.get_type_hints(cls)
    fields = tuple(
        FieldSpec(
            f.name,
            _compile(hints[f.name], cls.__name__, f.name),
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
        if f.name not in skip
    )
    spec = Spec(name, fields)
    _SPECS[cls] = spec
    return spec


@dataclass_transform(frozen_default=True, kw_only_default=True)
def record(cls: type[T]) -> type[T]:
    """Declare a record that events may contain: the class becomes a frozen, keyword-only,
    slotted dataclass and its fields are checked against the whitelist."""
    made = dataclass(frozen=True, kw_only=True, slots=True)(cls)
    compile_spec(made, name=made.__name__)
    return made
