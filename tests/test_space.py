import json

import optuna
import pytest

from flightco.errors import SpaceError
from flightco.space import FLOAT_BITS, Genome, SearchSpace, sample_genome

from conftest import SPACE


def _genome(seed: int = 0, space: SearchSpace | None = None) -> Genome:
    space = space or SearchSpace.load(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return sample_genome(study.ask(), space, in_channels=1, resolution=28, num_classes=10)


def test_genome_json_roundtrip_and_hash():
    g = _genome(3)
    again = Genome.from_json(g.to_json())
    assert again == g and hash(again) == hash(g)
    json.loads(g.to_json())  # plain JSON


def test_sampling_uses_stable_dotted_names_and_respects_choices():
    space = SearchSpace.load(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    g = sample_genome(trial, space, in_channels=1, resolution=28, num_classes=10)
    names = set(trial.params)
    assert {"stem.channels", "s1.depth", "s1.b0.kernel", "s1.b0.dw.w_bits", "classifier.a_bits"} <= names
    for p in g.precisions()[1:-1]:
        assert p.w_bits in space.precision.w_bits and p.a_bits in space.precision.a_bits
    assert g.stem.w_bits in space.precision.first_last_bits
    for b in g.blocks:
        assert (b.expand is None) == (b.expansion == 1)


def test_uniform_twin_keeps_architecture():
    g = _genome(5)
    u = g.with_uniform_bits(8)
    assert u.arch_key() == g.arch_key()
    assert {(p.w_bits, p.a_bits) for p in u.precisions()} == {(8, 8)}
    assert u.bits_summary() == "uniform W8A8"


def test_block_granularity_shares_bits(tmp_path):
    text = SPACE.read_text().replace("granularity: layer", "granularity: block")
    path = tmp_path / "s.yaml"
    path.write_text(text)
    g = _genome(2, SearchSpace.load(path))
    for b in g.blocks:
        assert b.dw == b.project


def _write_edited(tmp_path, old: str, new: str):
    path = tmp_path / "bad.yaml"
    text = SPACE.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def test_bits_outside_allowed_set_is_one_line_error(tmp_path):
    path = _write_edited(tmp_path, "w_bits: [2, 3, 4, 5, 6, 8]", "w_bits: [2, 7]")
    with pytest.raises(SpaceError) as exc:
        SearchSpace.load(path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and "precision.w_bits" in msg and "2, 3, 4, 5, 6, 8" in msg


def test_unknown_field_is_named(tmp_path):
    path = _write_edited(tmp_path, "  kernel: 3\n", "  kernel: 3\n  bogus: 1\n")
    with pytest.raises(SpaceError, match=r"stem.bogus: unknown field"):
        SearchSpace.load(path)


def test_float_only_for_first_last(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(SPACE.read_text().replace("a_bits: [2, 3, 4, 5, 6, 8]", "a_bits: [4, float]"))
    with pytest.raises(SpaceError, match="only allowed in first_last_bits"):
        SearchSpace.load(path)
    assert FLOAT_BITS == 32
