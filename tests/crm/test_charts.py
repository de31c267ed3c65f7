"""Server-drawn charts: axes that start at zero, round ticks, bars where the figures say."""

from django.template.loader import render_to_string

from crm import charts


def test_ticks_are_round_numbers_covering_the_data():
    chart = charts.bars(["w1", "w2", "w3"], [charts.Series("Joined", [3, 17, 42])], title="t")
    labels = [tick["label"] for tick in chart.y_ticks]
    assert labels == ["0", "20", "40", "60"]
    # Higher values are drawn higher up (smaller y), zero on the bottom line.
    ys = [tick["y"] for tick in chart.y_ticks]
    assert ys == sorted(ys, reverse=True)
    assert chart.zero_y == chart.plot["bottom"]


def test_people_leaving_are_drawn_below_the_axis():
    chart = charts.bars(
        ["w1", "w2"],
        [charts.Series("Joined", [40, 10]), charts.Series("Left", [-20, -5])],
        title="Supporters joined and left",
        stacked=True,
    )
    assert chart.y_ticks[0]["label"] == "-20"
    joined, left = chart.rects[0], chart.rects[1]
    assert joined["y"] + joined["h"] == chart.zero_y  # rises from the axis
    assert left["y"] == chart.zero_y  # hangs from it
    assert abs(joined["h"] - 2 * left["h"]) < 0.2  # 40 against 20


def test_grouped_bars_sit_side_by_side_and_lines_pass_through_each_period():
    chart = charts.bars(
        ["a", "b"],
        [
            charts.Series("Opens", [4, 2]),
            charts.Series("Clicks", [2, 1]),
            charts.Series("Net", [1, 3], line=True),
        ],
        title="t",
    )
    opens, clicks = chart.rects[0], chart.rects[1]
    assert clicks["x"] > opens["x"] and clicks["h"] < opens["h"]
    assert len(chart.lines) == 1 and len(chart.lines[0]["points"].split()) == 2


def test_rendered_chart_has_a_table_for_screen_readers_and_no_script():
    chart = charts.bars(
        ["7 Sep", "14 Sep"],
        [charts.Series("Joined", [12, 30]), charts.Series("Left", [-3, -1])],
        title="Supporters joined and left per week",
        x_name="Week",
    )
    html = render_to_string("admin/charts/chart.html", {"chart": chart})
    assert '<svg aria-hidden="true"' in html
    assert "<caption>Supporters joined and left per week</caption>" in html
    assert '<th scope="col">Week</th>' in html
    assert '<th scope="row">14 Sep</th><td>30</td><td>-1</td>' in html
    assert "<script" not in html


def test_an_empty_chart_says_so():
    chart = charts.bars(["w1"], [charts.Series("Joined", [0])], title="t")
    html = render_to_string("admin/charts/chart.html", {"chart": chart})
    assert "Nothing to show yet." in html and "<svg" not in html
