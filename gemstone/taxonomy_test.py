import pytest

from gemstone import taxonomy


def test_default_map_covers_the_88_classes_of_the_reference_collection():
    family_map = taxonomy.load_family_map()
    assert len(family_map) == 88
    assert family_map["Ruby"] == family_map["Sapphire Blue"] == "Corundum"
    assert family_map["Emerald"] == family_map["Aquamarine"] == "Beryl"
    assert family_map["Alexandrite"] == "Chrysoberyl"


def test_default_map_matches_the_reference_folders(real_data):
    folders = {p.name for p in real_data.iterdir() if p.is_dir()}
    assert folders == set(taxonomy.load_family_map())


def test_lookup_ignores_case_and_spacing():
    family_map = {"Sapphire Blue": "Corundum"}
    assert taxonomy.family_of("  sapphire   BLUE ", family_map) == "Corundum"
    assert taxonomy.family_of("Moldavite", family_map) == taxonomy.UNKNOWN_FAMILY
    assert taxonomy.family_of("Moldavite", family_map, default="Tektite") == "Tektite"


@pytest.mark.parametrize(
    "text, message",
    [
        ("name,group\nRuby,Corundum\n", "header"),
        ("variety,family\nRuby,\n", "empty"),
        ("variety,family\nRuby,Corundum\nruby ,Corundum\n", "twice"),
    ],
)
def test_malformed_map_is_rejected_with_the_line(tmp_path, text, message):
    path = tmp_path / "families.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        taxonomy.load_family_map(path)
