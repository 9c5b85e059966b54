"""A tiny name → object registry, so params.yaml names entries and typos list the valid names."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from gans.errors import UserError

T = TypeVar("T")


class RegistryError(UserError, KeyError):
    """An unknown or duplicate registry name."""

    def __str__(self) -> str:  # KeyError quotes its message; people want plain text
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to objects (classes or factories).

    >>> MODELS = Registry("model")
    >>> @MODELS.register("dcgan")
    ... class DCGAN: ...
    >>> MODELS.get("dcgan") is DCGAN
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise RegistryError(f"{self.kind} {name!r} is already registered.")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(f"Unknown {self.kind} {name!r}; valid names are: {', '.join(self.names())}.") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
