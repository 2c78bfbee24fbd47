"""The supernet's archive of scored subnets: whole lines, settings kept apart, siblings found."""

from __future__ import annotations

from pathlib import Path

from flightco.subnet_archive import ScoreSettings, SubnetRecord, append, archive_path, archives_for, load

SETTINGS = ScoreSettings(calibration_images=256, finetune_steps=25, finetune_lr=1e-3)


def _record(i: int, accuracy: float | None = 0.5, settings: ScoreSettings = SETTINGS) -> SubnetRecord:
    return SubnetRecord(params={"stem.channels": i}, genome={"stem_channels": i}, settings=settings,
                        inherited_accuracy=0.25, accuracy=accuracy)


def test_records_round_trip_and_other_settings_are_not_mixed(tmp_path: Path) -> None:
    path = archive_path(tmp_path / "run" / "supernet" / "abc.pt")
    assert path.name == "abc.scores.jsonl"
    append(path, _record(8))
    append(path, _record(16, accuracy=None))  # stopped before its fine-tuning
    append(path, _record(24, settings=ScoreSettings(256, 0, 1e-3)))  # scored without fine-tuning
    records = load([path], SETTINGS)
    assert records == [_record(8), _record(16, accuracy=None)]
    assert load([path], ScoreSettings(256, 0, 1e-3)) == [_record(24, settings=ScoreSettings(256, 0, 1e-3))]


def test_a_line_cut_short_by_a_crash_is_skipped_and_repeats_keep_the_first(tmp_path: Path) -> None:
    path = tmp_path / "k.scores.jsonl"
    append(path, _record(8, accuracy=0.5))
    with open(path, "a") as fh:
        fh.write('{"params": {"stem.channels": 16}, "genome": {"stem_ch')  # a crash mid-write
    append(path, _record(8, accuracy=0.9))  # the same subnet scored again (a resume, a sibling)
    append(path, _record(24))
    assert [r.genome["stem_channels"] for r in load([path], SETTINGS)] == [8, 24]
    assert load([path], SETTINGS)[0].accuracy == 0.5


def test_sibling_runs_of_the_same_supernet_share_their_archives(tmp_path: Path) -> None:
    own = tmp_path / "eyeriss" / "supernet" / "key1.pt"
    sibling = archive_path(tmp_path / "bitfusion" / "supernet" / "key1.pt")
    other_key = archive_path(tmp_path / "other" / "supernet" / "key2.pt")
    for path, i in ((sibling, 8), (other_key, 16)):
        append(path, _record(i))
    paths = archives_for(own)
    assert paths[0] == archive_path(own) and sibling.resolve() in [p.resolve() for p in paths]
    assert other_key.resolve() not in [p.resolve() for p in paths]
    assert [r.genome["stem_channels"] for r in load(paths, SETTINGS)] == [8]


def test_a_subnet_stopped_in_one_run_and_scored_in_another_keeps_its_score(tmp_path: Path) -> None:
    gated = tmp_path / "gated.scores.jsonl"
    plain = tmp_path / "plain.scores.jsonl"
    append(gated, _record(8, accuracy=None))  # early stopping skipped its fine-tuning here
    append(plain, _record(8, accuracy=0.7))   # the same subnet, fine-tuned and scored elsewhere
    append(plain, _record(16, accuracy=0.6))
    records = load([gated, plain], SETTINGS)
    assert [(r.genome["stem_channels"], r.accuracy) for r in records] == [(8, 0.7), (16, 0.6)]


def test_a_reader_parses_only_what_was_appended_and_waits_for_a_whole_line(tmp_path: Path) -> None:
    from flightco.subnet_archive import ArchiveReader

    path = tmp_path / "k.scores.jsonl"
    reader = ArchiveReader()
    assert reader.load([path], SETTINGS) == []  # not written yet
    append(path, _record(8))
    assert [r.genome["stem_channels"] for r in reader.load([path], SETTINGS)] == [8]
    append(path, _record(16))
    line = (path.read_text().splitlines()[0].replace('"stem_channels":8', '"stem_channels":24') + "\n").encode()
    with open(path, "ab") as fh:
        fh.write(line[:20])  # another worker is half-way through its write
    assert [r.genome["stem_channels"] for r in reader.load([path], SETTINGS)] == [8, 16]
    with open(path, "ab") as fh:
        fh.write(line[20:])
    assert [r.genome["stem_channels"] for r in reader.load([path], SETTINGS)] == [8, 16, 24]
    assert reader.load([path], SETTINGS) == load([path], SETTINGS)  # the same as reading it whole
