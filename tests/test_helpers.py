"""The suite's own machinery: the order its workers run the tests in."""

from pathlib import Path

from tests.helpers import long_first, prepared_from_cache


def test_each_worker_share_starts_with_its_turn_of_the_long_tests():
    items = ["s0", "L0", "s1", "s2", "L1", "s3", "s4", "L2", "s5", "s6"]
    ordered = long_first(items, 2, lambda i: i.startswith("L"))
    assert sorted(ordered) == sorted(items)
    assert ordered[:5] == ["L0", "L2", "s0", "s1", "s2"] and ordered[5:] == ["L1", "s3", "s4", "s5", "s6"]
    assert long_first(items, 1, lambda i: i.startswith("L")) == ["L0", "L1", "L2", "s0", "s1", "s2", "s3", "s4", "s5", "s6"]


def test_the_embedded_data_is_made_once_per_configuration_and_copied_into_each_test(make_params, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()

    def at(name: str, **overrides):
        return make_params(paths__raw=str(tmp_path / name / "raw"), paths__prepared=str(tmp_path / name / "prepared"),
                           **overrides)
    first, second, other = at("first"), at("second"), at("other", data__synthetic__seed=1)
    assert prepared_from_cache(first, cache) and prepared_from_cache(second, cache)
    assert len(list(cache.iterdir())) == 1  # made once, copied the second time
    manifest = "manifest.json"
    assert (Path(first.paths.prepared) / manifest).read_bytes() == (Path(second.paths.prepared) / manifest).read_bytes()
    assert prepared_from_cache(other, cache) and len(list(cache.iterdir())) == 2  # another world: its own entry
    assert not prepared_from_cache(at("own", data__dataset="local"), cache)  # a folder of one's own: never cached
