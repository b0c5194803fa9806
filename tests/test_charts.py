"""The health page's chart geometry: scales people can read, bars that add up."""

import pytest

from tasks_app.charts import nice_ceiling, stacked_bars


@pytest.mark.parametrize(
    ("largest", "scale"),
    [(0, (4, 1)), (1, (1, 1)), (3, (3, 1)), (7, (8, 2)), (24, (30, 10)), (99, (100, 25)), (130, (150, 50))],
)
def test_scales_end_on_a_round_number(largest, scale):
    assert nice_ceiling(largest) == scale


def test_columns_stack_their_segments_from_the_axis_up():
    groups = [("06:00", [("finished", 6), ("failed", 2)]), ("06:01", [("finished", 0)])]
    chart = stacked_bars(groups, horizontal=False, label_every=1)
    finished, failed = chart.bars  # an empty segment draws nothing
    tall = chart.bottom - chart.top
    assert chart.value_max == 8
    assert finished.y + finished.height == pytest.approx(chart.bottom)
    assert failed.y + failed.height == pytest.approx(finished.y)  # on top of the finished part
    assert (finished.height, failed.height) == (pytest.approx(tall * 6 / 8), pytest.approx(tall * 2 / 8))
    assert failed.title == "06:00: 2 failed"
    assert [tick.label for tick in chart.category_ticks] == ["06:00", "06:01"]


def test_rows_stack_their_segments_from_the_left():
    chart = stacked_bars([("default", [("queued", 3), ("started", 1)]), ("high", [])], horizontal=True)
    queued, started = chart.bars
    assert queued.x == chart.left
    assert started.x == pytest.approx(queued.x + queued.width)
    assert queued.width == pytest.approx(3 * started.width)
    assert [tick.label for tick in chart.category_ticks] == ["default", "high"]
    assert chart.height > chart.bottom  # room for the value labels below
