"""The registries that find a plug-in by name, with its options."""

from typing import Literal

import pytest
from pydantic import Field, ValidationError

from streamsnn.options import Options, Registry


class BeepOptions(Options):
    type: Literal["beep", "boop"] = "beep"
    times: int = Field(1, ge=1, description="how often")


class OtherOptions(Options):
    type: Literal["other"] = "other"


def test_a_registered_plugin_is_built_from_its_options():
    registry: Registry = Registry("noise")

    @registry.register(BeepOptions)
    class Beep:
        def __init__(self, options: BeepOptions, volume: int = 0) -> None:
            self.options, self.volume = options, volume

    assert registry.names == ["beep", "boop"] and registry.plugin("boop") is Beep
    made = registry.build(BeepOptions(type="boop", times=3), 7)
    assert isinstance(made, Beep) and made.options.times == 3 and made.volume == 7
    with pytest.raises(KeyError, match="unknown noise 'hiss'; known: beep, boop"):
        registry.options("hiss")
    with pytest.raises(ValueError, match="noise 'beep' is registered twice"):
        registry.register(BeepOptions)(Beep)
    with pytest.raises(TypeError, match="needs a field `type: Literal"):
        registry.register(Options)(Beep)


def test_the_union_tells_the_plugins_apart_by_type():
    registry: Registry = Registry("noise")
    registry.register(BeepOptions)(type("Beep", (), {"loud": True}))
    with pytest.raises(ValueError, match="no noise is registered"):
        registry.union(lambda cls: not getattr(cls, "loud", False))
    assert registry.union() is BeepOptions  # one plug-in: its options as they are
    registry.register(OtherOptions)(type("Other", (), {"loud": False}))
    with pytest.raises(TypeError, match="noise 'other' takes OtherOptions, not BeepOptions"):
        registry.build(BeepOptions.model_construct(type="other"))

    class Holder(Options):
        noise: registry.union()  # type: ignore[valid-type]
        quiet: list[registry.union(lambda cls: not cls.loud)]  # type: ignore[valid-type]

    held = Holder.model_validate({"noise": {"type": "other"}, "quiet": [{"type": "other"}]})
    assert isinstance(held.noise, OtherOptions)
    with pytest.raises(ValidationError, match=r"quiet\.0\.type\n  Input should be 'other'"):  # loud left out
        Holder.model_validate({"noise": {"type": "beep"}, "quiet": [{"type": "beep"}]})
    with pytest.raises(ValidationError, match="frozen"):
        held.noise = BeepOptions()
