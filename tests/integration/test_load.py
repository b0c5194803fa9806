"""A small run of bench/load.py in CI: every acknowledged job finishes exactly once."""

from bench.load import run_load


def test_every_acknowledged_job_finishes_exactly_once(tmp_path):
    report = run_load(jobs=600, clients=16, workers=2, scratch=tmp_path)
    print("\n".join(report.lines()))
    assert len(report.acknowledged) == 600
    assert report.refused == 0 and report.errors == 0
    assert report.finished == 600, report.other_status
    assert report.never_ran == 0
    assert report.ran_twice == 0
