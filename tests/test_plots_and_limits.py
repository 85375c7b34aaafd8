"""Issue 16 item 3 and 4: accuracy plots (colours, styles, ANN lines, zoom), ``plot if-rate``'s
default, ``simulate --model``'s ANN accuracy, and one ``--limit`` default across commands."""

import json

import matplotlib.image
import pytest
import torch
from click.testing import CliRunner

from ann2snn.cli import main
from ann2snn.data import DEFAULT_LIMIT, DataSource
from ann2snn.pipeline import ann_accuracy
from ann2snn.plots import IF_RATE_DEFAULT_T, AccuracyCurve, accuracy_axis_limits, plot_accuracy_curves
from tests.cli_fixtures import FACTORY, FAST, write_checkpoints


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plots")
    weights = write_checkpoints(folder / "checkpoints")["plain"]
    result = run(
        "convert", "--model", FACTORY, "--weights", weights, "--T", "8", "--mode", "max", "--out", folder, *FAST
    )
    assert result.exit_code == 0, result.output
    return folder, weights


def test_axis_zooms_to_the_data_and_keeps_ann_lines_inside():
    curves = [AccuracyCurve("a", "max", [90.0, 95.0], 99.5), AccuracyCurve("a", "99.9%", [92.0, 96.0], 99.5)]
    lo, hi = accuracy_axis_limits(curves)
    assert lo == pytest.approx(90.0 - 1.0) and hi == pytest.approx(99.5 + 1.0)  # pad: max(5 % of 9.5, 1)
    assert accuracy_axis_limits(curves, full_scale=True) == (-5.0, 105.0)  # 0-100, off the frame
    assert accuracy_axis_limits([AccuracyCurve("a", "m", [100.0, 100.0], 100.0)])[1] == 101.0
    # a wide range: 5 % headroom above an ANN line at 100 % (it was clipped to 101, on the border)
    assert accuracy_axis_limits([AccuracyCurve("a", "m", [10.0, 95.0], 100.0)]) == pytest.approx((5.5, 104.5))


def test_plot_accuracy_draws_a_line_per_curve_and_an_ann_line_per_model(tmp_path, monkeypatch):
    import matplotlib.axes

    drawn = []
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", lambda self, y, **kw: drawn.append((y, kw["color"])))
    curves = [
        AccuracyCurve("a", "max", [50.0, 60.0], 99.0),
        AccuracyCurve("a", "99.9%", [50.0, 60.0], 99.0),  # identical to the first: own style and marker
        AccuracyCurve("b", "max", [40.0, 70.0], 98.0),
    ]
    path = plot_accuracy_curves(curves, tmp_path / "acc.png", "t")
    assert drawn == [(99.0, "C0"), (98.0, "C1")]
    drawn.clear()  # one model: the ANN line in the colour of the model's curve, not black
    plot_accuracy_curves([AccuracyCurve("a", "", [97.0, 99.0], 100.0)], tmp_path / "one.png", "t")
    assert drawn == [(100.0, "C0")]
    drawn.clear()  # one model, two modes: the colours are the modes', the ANN line black
    two = [AccuracyCurve("a", "max", [90.0, 95.0], 99.0), AccuracyCurve("a", "1/3", [92.0, 96.0], 99.0)]
    plot_accuracy_curves(two, tmp_path / "two.png", "t")
    assert drawn == [(99.0, "k")]
    assert matplotlib.image.imread(path).shape[2] == 4
    with pytest.raises(ValueError, match="model 'a', mode 'max' has no points"):
        plot_accuracy_curves([AccuracyCurve("a", "max", [])], tmp_path / "x.png", "t")


def test_identical_curves_and_ann_lines_of_two_models_both_stay_visible(tmp_path, monkeypatch):
    import matplotlib.axes

    lines, anns = [], []
    plot, axhline = matplotlib.axes.Axes.plot, matplotlib.axes.Axes.axhline
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda self, *a, **kw: lines.append(kw) or plot(self, *a, **kw))
    monkeypatch.setattr(
        matplotlib.axes.Axes, "axhline", lambda self, *a, **kw: anns.append(kw) or axhline(self, *a, **kw)
    )
    same = [50.0, 60.0, 70.0]
    curves = [AccuracyCurve("a", "max", same, 99.0), AccuracyCurve("b", "max", same, 99.0)]
    path = plot_accuracy_curves(curves, tmp_path / "same.png", "t")
    assert [(kw["color"], kw["linestyle"]) for kw in lines] == [("C0", "-"), ("C1", "-")]
    # the first model's curve is drawn wider and its markers larger: a border around the second
    assert [(kw["linewidth"], kw["markersize"]) for kw in lines] == [(3.0, 8.0), (1.5, 5.0)]
    # the ANN lines' dashes interleave: each one's dash lies in the other's gap
    assert [kw["linestyle"] for kw in anns] == [(0, (5, 5)), (5, (5, 5))]
    assert matplotlib.image.imread(path).shape[2] == 4


def test_plot_accuracy_cli_title_and_full_scale(converted, tmp_path):
    folder, _ = converted
    for flag in ((), ("--full-scale",)):
        result = run("plot", "accuracy", folder / "summary.json", "--out", tmp_path / "a.png", *flag)
        assert result.exit_code == 0, result.output
        assert (tmp_path / "a.png").stat().st_size > 1000


def test_plot_accuracy_draws_the_summarys_numbers(converted, tmp_path, monkeypatch):
    import matplotlib.axes
    import matplotlib.image

    folder, _ = converted
    lines, anns, titles = [], [], []
    plot, axhline, set_title = matplotlib.axes.Axes.plot, matplotlib.axes.Axes.axhline, matplotlib.axes.Axes.set_title
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "plot",
        lambda self, t, y, **kw: lines.append((list(t), list(y))) or plot(self, t, y, **kw),
    )
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", lambda self, y, **kw: anns.append(y) or axhline(self, y, **kw))
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", lambda self, x, **kw: titles.append(x) or set_title(self, x))
    out = tmp_path / "a.png"
    result = run("plot", "accuracy", folder / "summary.json", "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((folder / "summary.json").read_text())
    (row,) = summary["rows"]
    assert lines == [(list(range(1, 9)), row["accuracy_per_t"])] and anns == [row["ann_accuracy"]]
    settings = summary["settings"]
    assert titles == [
        f"SNN accuracy, T = 8, V[0] = {settings['v_init']:g} V_th, {settings['readout']} readout, "
        f"{settings['evaluation_samples']} samples of {settings['data']}"
    ]
    height, width = matplotlib.image.imread(out).shape[:2]
    assert 600 < width < 1000 and 400 < height < 560  # 7 x 4.5 inches at 120 dpi, trimmed to the drawing


def test_a_shorter_T_that_is_another_snn_keeps_its_curve(tmp_path):
    from ann2snn.cli.commands import summary_curves

    def row(T, acc, mode="99.9%", model="m"):
        return {"model": model, "mode": mode, "T": T, "accuracy_per_t": acc, "ann_accuracy": 99.0}

    same = [row(4, [70.0, 80.0, 85.0, 90.0]), row(8, [70.0, 80.0, 85.0, 90.0, 92.0, 94.0, 95.0, 96.0])]
    assert [(c.mode, len(c.accuracy)) for c in summary_curves(same)] == [("99.9%", 8)]  # T=4 is T=8's start
    calibrated = [row(8, [69.0, 77.5, 89.0, 91.5, 93.5, 96.5, 98.0, 98.5]), row(4, [79.5, 87.5, 93.0, 96.5])]
    curves = summary_curves([*calibrated, row(8, [50.0] * 8, mode="max"), {**row(2, None), "status": "failed"}])
    assert [(c.model, c.mode, c.accuracy[-1]) for c in curves] == [
        ("m", "99.9% T=4", 96.5),  # fitted for T=4: better at t=4 than the T=8 SNN (91.5), so it is drawn
        ("m", "99.9% T=8", 98.5),
        ("m", "max", 50.0),
    ]
    (tmp_path / "summary.json").write_text(json.dumps({"settings": {}, "rows": calibrated}))
    import matplotlib.axes

    titles = []
    set_title = matplotlib.axes.Axes.set_title
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(matplotlib.axes.Axes, "set_title", lambda self, x, **kw: titles.append(x) or set_title(self, x))
        result = run("plot", "accuracy", tmp_path / "summary.json")
    assert result.exit_code == 0, result.output
    assert titles == ["SNN accuracy, T = 4, 8"]  # both T's drawn
    assert (tmp_path / "accuracy_vs_t.png").stat().st_size > 1000


def test_simulate_plot_names_T_v_init_and_readout(converted, tmp_path, monkeypatch):
    import matplotlib.axes

    folder, _ = converted
    titles = []
    set_title = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", lambda self, x, **kw: titles.append(x) or set_title(self, x))
    result = run("simulate", folder / "plain_max_T8.nir", "--limit", 10, "--quiet", "--plot", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    assert titles == ["plain_max_T8.nir on 10 samples of mnist\nT = 8, V[0] = 0.5 V_th, membrane readout"]


def test_if_rate_default_T_shows_the_half_threshold_difference(tmp_path):
    result = run("plot", "if-rate", "--out", tmp_path / "r.png")
    assert result.exit_code == 0, result.output
    height, width = matplotlib.image.imread(tmp_path / "r.png").shape[:2]
    assert 500 < width < 800 and 400 < height < 560  # 6 x 4.5 inches at 120 dpi, trimmed to the drawing
    (T,) = [p.default for p in main.commands["plot"].commands["if-rate"].params if p.name == "T"]
    assert T == IF_RATE_DEFAULT_T == 8
    from simulator import IFNeuron, simulate

    x = torch.linspace(0, 1, 101)[None, :]
    zero, half = (simulate(IFNeuron(v_init=v), x, T).outputs.sum(0)[0] / T for v in (0.0, 0.5))
    assert float((half - zero).abs().max()) == pytest.approx(1 / T)  # visible at T = 8, not at 100
    assert float((half - x[0].clamp(0, 1)).abs().max()) <= 1 / (2 * T) + 1e-6


def test_simulate_refuses_model_options_without_a_model(converted):
    folder, weights = converted
    result = run("simulate", folder / "plain_max_T8.nir", "--limit", 5, "--weights", weights, "--model-arg", "w=3")
    assert result.exit_code == 2
    assert "--weights, --model-arg need --model (the ANN to run beside the SNN)" in result.output


def test_simulate_with_the_model_reports_the_ann_accuracy_on_the_same_samples(converted, tmp_path):
    folder, weights = converted
    nir_file = folder / "plain_max_T8.nir"
    result = run(
        "simulate",
        nir_file,
        "--limit",
        20,
        "--json",
        "--model",
        FACTORY,
        "--weights",
        weights,
        "--plot",
        tmp_path / "s.png",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    from ann2snn.models import ModelSpec, load_model
    from ann2snn.nirinfo import open_for_simulation

    _, dataset, _ = open_for_simulation(nir_file, DataSource("mnist"), None, 20)
    ann = load_model(ModelSpec(factory=FACTORY, weights=weights)).eval()
    assert out["ann_accuracy"] == pytest.approx(ann_accuracy(ann, dataset, 100))
    assert (tmp_path / "s.png").stat().st_size > 1000
    bad = run("simulate", nir_file, "--limit", 2, "--model", FACTORY, "--model-arg", "width")
    assert bad.exit_code == 2 and "--model-arg" in bad.output


@pytest.mark.parametrize(
    "command", [("demo",), ("convert",), ("simulate",), ("verify",), ("report",), ("diagnose",), ("plot", "raster")]
)
def test_one_limit_default_in_every_command(command):
    cmd = main
    for name in command:
        cmd = cmd.commands[name]
    (limit,) = [p for p in cmd.params if p.name == "limit"]
    assert limit.default == DEFAULT_LIMIT == 1000
    assert f"default {DEFAULT_LIMIT}" in limit.help


def test_simulate_plot_without_labels_is_a_usage_error(converted, tmp_path):
    import numpy as np

    folder, _ = converted
    np.save(tmp_path / "inputs.npy", np.zeros((3, 1, 28, 28), dtype=np.float32))
    result = run(
        "simulate", folder / "plain_max_T8.nir", "--data", tmp_path / "inputs.npy", "--plot", tmp_path / "s.png"
    )
    assert result.exit_code == 2
    assert "Invalid value for '--plot': " in result.output and "inputs.npy has no labels" in result.output
    assert not (tmp_path / "s.png").exists()
