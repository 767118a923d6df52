import pytest

from components import __version__
from components.common.images import STAGES, ImageSet


def test_every_stage_has_its_own_image_tagged_with_the_version():
    refs = {s: ImageSet().ref(s) for s in STAGES}
    assert len(set(refs.values())) == len(STAGES)
    assert all(r.endswith(f":{__version__}") for r in refs.values())


def test_registry_and_tag_are_set_by_the_caller():
    assert (
        ImageSet("registry.local:5000/team", "abc").ref("drift")
        == "registry.local:5000/team/fashion-drift-drift:abc"
    )


@pytest.mark.parametrize("registry,tag", [("", "1"), ("r/", "1"), ("r", ""), ("r", "a:b")])
def test_bad_registry_or_tag_is_refused(registry, tag):
    with pytest.raises(ValueError):
        ImageSet(registry, tag)


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown stage"):
        ImageSet().ref("deploy")
