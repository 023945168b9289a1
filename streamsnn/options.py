"""Options of the pipeline's parts: the base of every options class, the error of a bad
configuration, and the registries that find a part by name.

Every plug-in (a source, sink, exit or reset policy, encoder) declares its options once, as an
``Options`` class in its own module with a ``type: Literal[name]`` field and a description per
field, and registers itself in its kind's ``Registry`` (``@SINKS.register(ZmqSinkConfig)``; its
module is imported by its kind's package, e.g. ``streamsnn/sinks/__init__.py``); the plug-in class
takes that options object. ``streamsnn.config`` assembles ``pipeline.yaml`` from the registries, so
a new plug-in needs no edit there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names file, field and value."""


class Options(BaseModel):
    """Options as written in a YAML file: unknown keys are errors, and a validated object is
    never changed (frozen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P")
C = TypeVar("C", bound=type)


def type_names(options: type[Options]) -> tuple[str, ...]:
    """The names an options class answers to: the values its ``type`` field allows."""
    field = options.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal:
        raise TypeError(f"{options.__name__} needs a field `type: Literal[<name>, ...]`")
    return get_args(field.annotation)


class Registry(Generic[P]):
    """The plug-ins of one kind (``kind``: "source", "sink"...) by name: each one's options class
    and the class built from it (``cls(options, *context)``, e.g. an encoder also takes the input
    shape). Capabilities are class attributes of the plug-in classes (``plugin(name).needs_labels``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, tuple[type[Options], type[P]]] = {}

    def register(self, options: type[Options]) -> Callable[[C], C]:
        """Class decorator: register the class under every name ``options.type`` allows."""

        def add(cls: C) -> C:
            for name in type_names(options):
                if name in self._entries:
                    raise ValueError(f"{self.kind} '{name}' is registered twice")
                self._entries[name] = (options, cls)
            return cls

        return add

    @property
    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def _entry(self, name: str) -> tuple[type[Options], type[P]]:
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} '{name}'; known: {', '.join(self.names)}")
        return self._entries[name]

    def options(self, name: str) -> type[Options]:
        """The options class of the plug-in called ``name``."""
        return self._entry(name)[0]

    def plugin(self, name: str) -> type[P]:
        """The class of the plug-in called ``name`` (its capabilities are class attributes)."""
        return self._entry(name)[1]

    def build(self, options: Options, *context: Any) -> P:
        """The plug-in ``options.type`` made from ``options`` (and ``context``, as its kind takes)."""
        name = getattr(options, "type", None)
        expected, cls = self._entry(str(name))
        if not isinstance(options, expected):
            raise TypeError(f"{self.kind} '{name}' takes {expected.__name__}, not {type(options).__name__}")
        return cls(options, *context)

    def union(self, where: Callable[[type[P]], bool] | None = None) -> Any:
        """A pydantic type: the options of any registered plug-in (those whose class passes
        ``where``), told apart by their ``type``."""
        classes: list[type[Options]] = []
        for options, cls in (self._entries[name] for name in self.names):
            if options not in classes and (where is None or where(cls)):
                classes.append(options)
        if not classes:
            raise ValueError(f"no {self.kind} is registered")
        if len(classes) == 1:
            return classes[0]
        return Annotated[Union[tuple(classes)], Field(discriminator="type")]  # noqa: UP007
