"""The name → object registry: lookups, helpful typo messages, duplicates, and the project's registries."""

from __future__ import annotations

import pytest

from gans.registry import Registry, RegistryError


def _widgets() -> Registry:
    widgets = Registry("widget")
    widgets.register("beta")(object())
    widgets.register("alpha")(object())
    return widgets


def test_get_returns_the_registered_object():
    widgets = Registry("widget")

    @widgets.register("alpha")
    class Alpha:
        pass

    assert widgets.get("alpha") is Alpha


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(RegistryError) as error:
        _widgets().get("alpah")
    assert str(error.value) == "Unknown widget 'alpah'; valid names are: alpha, beta."


def test_duplicate_registration_raises():
    widgets = _widgets()
    with pytest.raises(RegistryError, match="already registered"):
        widgets.register("alpha")(object())


def test_names_are_sorted_and_in_checks_membership():
    widgets = _widgets()
    assert widgets.names() == ["alpha", "beta"]
    assert "alpha" in widgets
    assert "gamma" not in widgets


def test_registry_error_str_is_the_plain_message():
    error = RegistryError("no such thing")
    assert str(error) == "no such thing"
    assert str(KeyError("no such thing")) == "'no such thing'"  # what plain KeyError would print
    assert isinstance(error, KeyError)


def test_project_registries_hold_the_expected_names():
    from gans.losses import LOSSES
    from gans.models import MODELS

    assert MODELS.names() == ["dcgan", "mlp", "sagan"]
    assert LOSSES.names() == ["bce", "hinge", "lsgan", "wgan-gp"]
