"""The evaluation report's plots: the lengths plot draws shares of turns (each line sums to 1), and
no legend covers a bar of the bar charts."""

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from twin_trainer.charts import evaluation_plots, length_shares, lengths_figure, metrics_figure  # noqa: E402
from twin_trainer.report_statistics import summarize  # noqa: E402

pytestmark = pytest.mark.unit

MODELS = [
    {"key": "base", "label": "base model", "adapterId": None, "history": False},
    {"key": "base+history", "label": "base model + real history", "adapterId": None, "history": True},
    {"key": "adapter:1", "label": "run-1", "adapterId": 1, "history": True},
]
REAL = [["привет", "как ты?"], ["ok"], ["see you tomorrow", "bye 👋"], ["lol"], ["да, давай"], ["no idea"]] * 2
GENERATED = {
    "base": [["Hello! I am doing well, thank you for asking. How can I help you today?"]] * len(REAL),
    "base+history": [["Certainly. Here is a detailed answer to your question about tomorrow."]] * len(REAL),
    "adapter:1": [turn[::-1] for turn in REAL],
}
SAMPLES = [
    {"model": model["key"], "example_id": f"e{index // 3}", "chat_id": 10, "turn_index": index % 3,
     "context": [], "real": real, "generated": GENERATED[model["key"]][index], "probe": False}  # fmt: skip
    for model in MODELS
    for index, real in enumerate(REAL)
]


def test_each_series_of_the_lengths_plot_is_shares_of_its_turns_summing_to_one():
    bins = np.linspace(0, 400, 30)
    shares = length_shares([3, 3, 20, 90, 1000], bins)
    assert shares.sum() == pytest.approx(1.0), "the longest turn counts in the last bin"
    assert shares[0] == pytest.approx(0.4) and shares[-1] == pytest.approx(0.2)
    assert length_shares([], bins).sum() == 0

    figure = lengths_figure([("real", REAL), ("base model", GENERATED["base"]), ("silent", [])])
    axes = figure.axes[0]
    assert axes.get_ylabel() == "share of turns"
    lines = [artist for artist in axes.patches if artist.get_label() in ("real", "base model")]
    assert len(lines) == 2, "one line per series with turns; an empty series draws none"
    for line in lines:
        assert line.get_data().values.sum() == pytest.approx(1.0)


def test_no_legend_covers_a_bar():
    summary = summarize(SAMPLES, MODELS)
    figure = metrics_figure(summary, MODELS)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    legends = figure.legends + [axes.get_legend() for axes in figure.axes if axes.get_legend()]
    assert legends, "the plot has a legend"
    bars = [patch.get_window_extent(renderer) for patch in figure.axes[0].patches if patch.get_width() > 0]
    assert bars
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(bar) for bar in bars), "the legend covers a bar"
        assert figure.bbox.contains(box.x0, box.y0) and figure.bbox.contains(box.x1, box.y1), "the legend is on the figure"
    plots = evaluation_plots(SAMPLES, summary, MODELS)
    assert sorted(plots) == ["lengths.png", "messages_per_turn.png", "metrics.png"]
    assert all(data.startswith(b"\x89PNG") for data in plots.values())
