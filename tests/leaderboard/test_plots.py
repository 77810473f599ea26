"""The SVG plot builders: well-formed, escaped, faithful to the numbers, readable colours."""

from __future__ import annotations

import datetime as dt
import math
import xml.etree.ElementTree as ET

import pytest

from leaderboard.pages.plots import (
    RatingPoint,
    Series,
    diverging_colour,
    heatmap_svg,
    history_svg,
    nice_ticks,
    ratings_svg,
    sequential_colour,
    text_colour,
)

NS = "{http://www.w3.org/2000/svg}"
DAY = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_ratings_plot_draws_one_dot_and_one_bar_per_model_in_order() -> None:
    points = [RatingPoint("best", 1100, 1080, 1120), RatingPoint("worst", 900, 850, 940)]
    root = parse(ratings_svg(points))
    dots = root.findall(f".//{NS}circle")
    assert len(dots) == 2
    assert float(dots[0].get("cy", 0)) < float(dots[1].get("cy", 0))  # best on top
    assert float(dots[0].get("cx", 0)) > float(dots[1].get("cx", 0))  # and further right
    bars = [line for line in root.iter(f"{NS}line") if line.get("stroke-width") == "3"]
    # The bar spans the interval: its ends keep the interval's proportions.
    (a1, a2), (b1, b2) = ((float(b.get("x1", 0)), float(b.get("x2", 0))) for b in bars)
    assert (a2 - a1) / (b2 - b1) == pytest.approx(40 / 90, rel=1e-2)


def test_model_names_are_escaped_in_every_plot() -> None:
    evil = '<script>alert("x")</script> & co'
    svgs = [
        ratings_svg([RatingPoint(evil, 1000, 990, 1010)]),
        heatmap_svg([evil, "b"], [[None, 0.7], [0.3, None]], kind="probability", title="t"),
        history_svg([Series(evil, [(DAY, 1000), (DAY + dt.timedelta(days=1), 1010)]),
                     Series("b", [(DAY, 990)])]),
    ]  # fmt: skip
    for svg in svgs:
        assert "<script>" not in svg
        parse(svg)  # still well-formed XML


def test_heatmap_writes_each_value_and_leaves_the_diagonal_and_gaps_blank() -> None:
    values = [[None, 0.75, math.nan], [0.25, None, 0.5], [None, 0.5, None]]
    root = parse(heatmap_svg(["a", "b", "c"], values, kind="probability", title="win"))
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert ".75" in texts and ".25" in texts and texts.count(".50") == 2
    rects = root.findall(f".//{NS}rect")
    assert len(rects) == 9
    blank = [r for r in rects if r.get("fill") == "#f3f4f6"]
    assert len(blank) == 5  # three on the diagonal, the NaN and the None
    assert root.get("aria-label") == "win"


def test_count_heatmap_abbreviates_large_counts_and_blanks_the_diagonal() -> None:
    root = parse(heatmap_svg(["a", "b"], [[0, 12345], [12345, 0]], kind="count", title="n"))
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert texts.count("12.3k") == 2 and "0" not in texts


def test_unknown_heatmap_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown heatmap kind"):
        heatmap_svg(["a"], [[None]], kind="pie", title="t")


def test_empty_inputs_draw_nothing() -> None:
    assert ratings_svg([]) == ""
    assert heatmap_svg([], [], kind="count", title="t") == ""
    # One snapshot is a point, not a history.
    assert history_svg([Series("a", [(dt.datetime(2024, 1, 1), 1000)])]) == ""


def test_history_draws_a_line_per_model_with_a_legend_best_first() -> None:
    day = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    series = [
        Series("low", [(day, 950), (day + dt.timedelta(days=1), 940)]),
        Series("high", [(day, 1050), (day + dt.timedelta(days=1), 1070)]),
    ]
    root = parse(history_svg(series))
    lines = root.findall(f".//{NS}polyline")
    assert len(lines) == 2
    legend = [t.text for t in root.iter(f"{NS}text") if t.text in ("low", "high")]
    assert legend == ["high", "low"]
    # Higher ratings are drawn higher (smaller y).
    y_high = float(lines[0].get("points", "").split()[-1].split(",")[1])
    y_low = float(lines[1].get("points", "").split()[-1].split(",")[1])
    assert y_high < y_low


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0, 10, [0, 2, 4, 6, 8, 10]), (812, 1187, [900, 1000, 1100]),
     (0.1, 0.9, [0.2, 0.4, 0.6, 0.8]), (5, 5, [5])],
)  # fmt: skip
def test_nice_ticks_are_round_and_inside_the_range(
    low: float, high: float, expected: list[float]
) -> None:
    assert nice_ticks(low, high, 5) == pytest.approx(expected)


def test_colour_scales_run_from_end_to_end_through_a_light_middle() -> None:
    assert diverging_colour(0.0) == "#b35806" and diverging_colour(1.0) == "#542788"
    assert diverging_colour(0.5) == "#f7f7f7" and diverging_colour(-3) == diverging_colour(0)
    assert sequential_colour(0, 100) == "#f7fbff" and sequential_colour(100, 100) == "#084594"
    assert sequential_colour(5, 0) == "#f7fbff"


def test_cell_text_stays_readable_on_dark_and_light_fills() -> None:
    assert text_colour("#084594") == "#ffffff"
    assert text_colour("#542788") == "#ffffff"
    assert text_colour("#f7f7f7") != "#ffffff"
