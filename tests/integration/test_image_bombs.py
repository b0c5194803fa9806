"""A small run of bench/image_bombs.py: hostile images, eight at once, against the production server."""

from bench.image_bombs import RSS_TARGET_MB, hostile_images, production_site, storm


def test_eight_hostile_images_at_once_keep_every_web_process_under_the_target(tmp_path):
    hostile = hostile_images()
    with production_site(tmp_path) as (base_url, processes):
        assert len(processes) == 3  # the supervisor and its two workers
        for name, (image, expected) in hostile.items():
            measured, statuses = storm(base_url, processes, image, rounds=2)
            print(f"\n{name}: {statuses}, peak RSS {measured.peak_mb}")
            assert statuses == {expected}, name
            assert max(measured.peak_mb.values()) < RSS_TARGET_MB, (name, measured.peak_mb)
            assert measured.healthz_failures == 0
