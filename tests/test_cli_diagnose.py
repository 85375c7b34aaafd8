"""``ann2snn diagnose`` and ``ann2snn plot raster``: tables, JSON, PNGs and bad input."""

import json
import re

import matplotlib.image
import pytest
import torch
from click.testing import CliRunner

from ann2snn.cli import main
from ann2snn.data import DataSource
from ann2snn.diagnose import raster_file
from ann2snn.nirinfo import open_for_simulation
from ann2snn.plots import FIDELITY_PANEL_PX
from simulator import simulate
from tests.cli_fixtures import FACTORY, FAST, write_checkpoints


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("diagnose")
    weights = write_checkpoints(folder / "checkpoints")["plain"]
    args = ["convert", "--model", FACTORY, "--weights", str(weights), "--T", "8", "--out", str(folder), *FAST]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return folder / "plain_p99.9_T8.nir", weights


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def diagnose(nir_file, weights, *extra):
    return run("diagnose", nir_file, "--model", FACTORY, "--weights", weights, "--limit", 20, *extra)


def table_rows(output: str) -> dict[str, list[str]]:
    lines = [line for line in output.splitlines() if line.startswith("| if_")]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}


def test_table_json_and_plot_agree(converted, tmp_path):
    nir_file, weights = converted
    table = diagnose(nir_file, weights)
    assert table.exit_code == 0, table.output
    as_json = diagnose(nir_file, weights, "--json", "--plot", tmp_path / "layers.png")
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    assert report["T"] == 8 and report["samples"] == 20
    rows = table_rows(table.output)
    assert list(rows) == ["if_network_2", "if_network_6", "if_network_10"] == [r["layer"] for r in report["layers"]]
    for layer in report["layers"]:
        expected = [
            layer["relu"],
            f"{layer['lam']:.4g}",
            str(layer["neurons"]),
            f"{layer['correlation']:.4f}",
            f"{layer['mae']:.4f}",
            f"{100 * layer['saturated']:.2f}",
            f"{100 * layer['clipped']:.2f}",
            f"{100 * layer['silent']:.2f}",
            f"{layer['mean_activation']:.4f}",
            f"{layer['mean_rate']:.4f}",
        ]
        assert rows[layer["layer"]] == expected
        assert 0 < len(layer["points"]) <= 2000
    first = report["first_growing"] or "none"
    if report["reason"]:
        first += f": {report['reason']}"
    rule = "MAE > 2 × previous MAE + 1/(2T), > 1 % of a above λ, or a correlation drop"
    assert f"first layer whose error grows ({rule}): {first}\n" in table.output + "\n"
    assert report["warnings"] == []
    image = matplotlib.image.imread(tmp_path / "layers.png")
    assert image.shape[:2] == (FIDELITY_PANEL_PX + 40, 3 * FIDELITY_PANEL_PX)


def test_diagnose_refuses_a_model_that_does_not_match(converted):
    nir_file, _ = converted
    no_weights = run("diagnose", nir_file, "--model", FACTORY, "--limit", 2)
    assert no_weights.exit_code != 0
    assert f"factory {FACTORY} without weights would use the model as the factory builds it" in no_weights.output
    result = run("diagnose", nir_file, "--model", "ann2snn.zoo.mnist_resnet:MnistResNet", "--no-weights", "--limit", 2)
    assert result.exit_code == 1
    assert "ValueError: IF layer 'if_network_2' of the SNN has no ReLU in the ANN" in result.output
    missing = run("diagnose", nir_file, "--limit", 2)
    assert missing.exit_code == 2 and "Missing option '--model'" in missing.output


def test_diagnose_warns_when_the_file_was_converted_from_other_weights(converted, tmp_path):
    # fine-tuned weights (a QCFS fine-tune of the file's) still correlate layer by layer, so the
    # correlation warning stays silent: the file's recorded fingerprint tells
    from ann2snn.models import file_sha256
    from exporters import import_nir
    from simulator import META_KEY

    nir_file, weights = converted
    recorded = json.loads(import_nir(nir_file).meta[META_KEY]["model_fingerprint"])
    assert recorded == {"factory": FACTORY, "weights_sha256": file_sha256(weights), "pickle_sha256": None}
    state = torch.load(weights, weights_only=True)
    tuned = tmp_path / "tuned.pt"
    torch.save({k: v * 1.01 if v.is_floating_point() else v for k, v in state.items()}, tuned)
    result = diagnose(nir_file, tuned, "--json")
    assert result.exit_code == 0, result.output
    warnings = json.loads(result.output)["warnings"]
    expected = f"{nir_file.name} was converted from another model than the one given (other weights)"
    assert warnings[0].startswith(expected) and len(warnings) == 1  # the correlations stay high
    table = diagnose(nir_file, tuned)
    assert f"warning: {expected}" in table.output


def test_provenance_compares_content_not_paths_and_ignores_foreign_metadata(tmp_path):
    from ann2snn.diagnose import provenance_mismatch
    from ann2snn.models import ModelSpec
    from ann2snn.zoo.mnist_cnn import MnistCNN
    from exporters import export_nir, import_nir
    from simulator import META_KEY, IFNeuron

    factory = tmp_path / "fac.py"
    factory.write_text("from ann2snn.zoo.mnist_cnn import MnistCNN\ndef make():\n    return MnistCNN()\n")
    weights = tmp_path / "w.pt"
    torch.save(MnistCNN().state_dict(), weights)
    copy = tmp_path / "sub" / "w_copy.pt"
    copy.parent.mkdir()
    copy.write_bytes(weights.read_bytes())
    recorded = json.dumps(ModelSpec(f"{factory}:make", weights).fingerprint(), sort_keys=True)
    # the same factory file and the same weights under other paths: no warning
    assert provenance_mismatch(recorded, ModelSpec(f"{tmp_path / '.' / 'fac.py'}:make", copy)) is None
    other = tmp_path / "w2.pt"
    torch.save({k: v + 1 for k, v in MnistCNN().state_dict().items()}, other)
    assert "(other weights)" in provenance_mismatch(recorded, ModelSpec(f"{factory}:make", other))
    assert "factory" in provenance_mismatch(recorded, ModelSpec("ann2snn.zoo.mnist_cnn:MnistCNN", weights))
    assert provenance_mismatch("resnet20", ModelSpec(f"{factory}:make", other)) is None  # not ours: no verdict
    assert provenance_mismatch(None, ModelSpec(f"{factory}:make", other)) is None
    # a user's own "model" metadata key still imports (it is not ann2snn's JSON key)
    snn = torch.nn.Sequential(torch.nn.Linear(4, 2), IFNeuron())
    path = export_nir(snn, tmp_path / "own.nir", input_shape=(4,), metadata={"model": "resnet20"})
    assert import_nir(path).meta[META_KEY]["model"] == "resnet20"


def test_raster_counts_and_png(converted, tmp_path):
    nir_file, _ = converted
    out = tmp_path / "raster.png"
    result = run("plot", "raster", nir_file, "--sample", 3, "--layer", "if_network_6", "--neurons", 10, "--out", out)
    assert result.exit_code == 0, result.output
    snn, data, T = open_for_simulation(nir_file, data=DataSource("mnist"), limit=4)
    counts = simulate(snn, data.x, T).spike_counts["if_network_6"][3]
    raster, _ = raster_file(nir_file, DataSource("mnist"), 3, "if_network_6", None, 10)
    assert raster.layer_spikes == int(counts.sum())
    assert raster.spikes.sum(0).tolist() == counts.flatten()[raster.neurons].long().tolist()
    predicted = int(simulate(snn, data.x[3:4], T).predictions()[-1, 0])
    assert raster.prediction == predicted and raster.label == int(data.y[3]) and raster.layer_neurons == 32 * 11 * 11
    assert result.output.strip() == (
        f"wrote {out}: {int(raster.spikes.sum())} spikes of 10 neurons of if_network_6 "
        f"(sample 3: label {int(data.y[3])}, predicted {predicted})"
    )
    assert matplotlib.image.imread(out).shape[:2] == (400, 800)


def test_raster_plot_ticks_real_indices_and_title(converted, tmp_path, monkeypatch):
    import matplotlib.axes

    from ann2snn.plots import RASTER_TICK, plot_raster

    nir_file, _ = converted
    raster, image = raster_file(nir_file, DataSource("mnist"), 3, "if_network_6", None, 10)
    seen: dict = {}
    real_eventplot, real_yticks = matplotlib.axes.Axes.eventplot, matplotlib.axes.Axes.set_yticks
    monkeypatch.setattr(
        matplotlib.axes.Axes, "eventplot", lambda self, p, **kw: seen.update(p=p, **kw) or real_eventplot(self, p, **kw)
    )
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "set_yticks",
        lambda self, ticks, labels=None, **kw: (
            seen.update(ticks=list(ticks), labels=labels) or real_yticks(self, ticks, labels, **kw)
        ),
    )
    plot_raster(raster, image, tmp_path / "r.png", "t", sample=3)
    assert seen["linelengths"] == RASTER_TICK < 1
    assert [len(p) for p in seen["p"]] == raster.spikes.sum(0).tolist()  # one tick per spike, per neuron
    assert seen["labels"] == [str(int(raster.neurons[j])) for j in seen["ticks"]]  # real indices, not ranks
    assert seen["labels"] != [str(j) for j in seen["ticks"]]
    from ann2snn.plots import raster_title

    assert raster_title(raster, 3) == (
        f"if_network_6, sample 3, label {raster.label}, predicted {raster.prediction}: the 10 most active of "
        f"{32 * 11 * 11} neurons ({int(raster.spikes.sum())} of the layer's {raster.layer_spikes} spikes shown)"
    )


def test_raster_bad_input(converted, tmp_path):
    nir_file, _ = converted
    out = tmp_path / "r.png"
    unknown = run("plot", "raster", nir_file, "--layer", "if_nope", "--out", out)
    assert unknown.exit_code == 2
    assert (
        "Invalid value for '--layer': no IF layer 'if_nope'; the IF layers are: if_network_2, if_network_6, "
        "if_network_10" in " ".join(unknown.output.split())
    )
    far = run("plot", "raster", nir_file, "--layer", "if_network_2", "--sample", 1000, "--out", out)
    assert far.exit_code == 2
    assert (
        "Invalid value for '--sample': sample 1000 is out of range: --limit 1000 takes samples 0 to 999 of mnist "
        "(raise --limit, or 0 for all)" in " ".join(far.output.split())
    )
    beyond = run("plot", "raster", nir_file, "--layer", "if_network_2", "--sample", 10000, "--limit", 0, "--out", out)
    assert beyond.exit_code == 2
    assert "sample 10000 is out of range: mnist has 10000 samples (0 to 9999)" in " ".join(beyond.output.split())
    negative = run("plot", "raster", nir_file, "--layer", "if_network_2", "--sample", -1, "--out", out)
    assert negative.exit_code == 2 and "'--sample'" in negative.output
    assert not out.exists()


def test_raster_sample_is_the_sample_simulate_takes_with_the_same_limit(converted, tmp_path):
    import numpy as np
    from PIL import Image

    nir_file, _ = converted
    root = tmp_path / "digits"  # 4 classes x 5 grey 28 x 28 images; the pixel value marks the image
    for c in range(4):
        for i in range(5):
            (root / f"c{c}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((28, 28), 10 * (5 * c + i) + 5, dtype=np.uint8), "L").save(root / f"c{c}/{i}.png")
    _, taken, _ = open_for_simulation(nir_file, DataSource.parse(str(root)), None, 4)
    assert taken.y.tolist() == [0, 1, 2, 3]  # --limit 4: images 0, 5, 10, 15 of the 20, one per class
    raster, image = raster_file(nir_file, DataSource.parse(str(root)), 1, "if_network_2", None, 5, limit=4)
    assert raster.label == 1 and torch.equal(image, taken.x[1])
    assert raster.classes == ["c0", "c1", "c2", "c3"] and raster.class_name(1) == "1 (c1)"
    assert raster.class_name(7) == "7"  # a prediction beyond the folder's classes: the index alone
    assert float(image.flatten()[0]) == pytest.approx(55 / 255)  # image 5 (c1/0.png); was image 10 (c2/0.png)
    out = tmp_path / "r.png"
    result = run(
        "plot", "raster", nir_file, "--data", root, "--sample", 1, "--limit", 4, "--layer", "if_network_2", "--out", out
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"\(sample 1: label 1 \(c1\), predicted \d+( \(c\d\))?\)", result.output), result.output


def test_the_plotted_points_and_panel_titles_are_the_json_and_the_table(converted, tmp_path, monkeypatch):
    import matplotlib.axes

    nir_file, weights = converted
    drawn, titles = [], []
    scatter, set_title = matplotlib.axes.Axes.scatter, matplotlib.axes.Axes.set_title
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "scatter",
        lambda self, x, y, **kw: drawn.append((list(x), list(y))) or scatter(self, x, y, **kw),
    )
    monkeypatch.setattr(
        matplotlib.axes.Axes, "set_title", lambda self, text, **kw: titles.append(text) or set_title(self, text, **kw)
    )
    png = tmp_path / "layers.png"
    as_json = diagnose(nir_file, weights, "--json", "--plot", png)
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    table = table_rows(diagnose(nir_file, weights).output)
    assert len(drawn) == len(report["layers"]) == 3
    for (xs, ys), layer, title in zip(drawn, report["layers"], titles, strict=True):
        assert [list(p) for p in zip(xs, ys, strict=True)] == layer["points"]  # every plotted point is in the JSON
        assert len(xs) == min(2000, 20 * layer["neurons"])
        assert table[layer["layer"]][3:5] == [f"{layer['correlation']:.4f}", f"{layer['mae']:.4f}"]
        assert title == f"{layer['layer']}\ncorr {layer['correlation']:.3f}, MAE {layer['mae']:.3f}"
    assert png.stat().st_size > 10_000


def test_diagnose_reports_progress_unless_quiet(converted):
    nir_file, weights = converted
    shown = diagnose(nir_file, weights, "--batch-size", 8)
    assert shown.exit_code == 0, shown.output
    assert "diagnose: 20 samples, " in shown.stderr and "\x1b" not in shown.stderr and "\r" not in shown.stderr
    quiet = diagnose(nir_file, weights, "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    as_json = diagnose(nir_file, weights, "--json")
    assert as_json.stderr == "" and json.loads(as_json.stdout)["samples"] == 20


def test_diagnose_takes_a_device(converted):
    nir_file, weights = converted
    here = json.loads(diagnose(nir_file, weights, "--json").stdout)
    assert json.loads(diagnose(nir_file, weights, "--json", "--device", "cpu").stdout) == here
    if not torch.cuda.is_available():
        cuda = diagnose(nir_file, weights, "--device", "cuda")
        assert cuda.exit_code == 2 and "'cuda': CUDA is not available on this machine" in cuda.output
    else:  # the same table on the GPU, to float32 summation order
        there = json.loads(diagnose(nir_file, weights, "--json", "--device", "cuda").stdout)
        for a, b in zip(here["layers"], there["layers"], strict=True):
            assert a["correlation"] == pytest.approx(b["correlation"], abs=1e-3)


def test_plot_layer_fidelity_takes_the_report_or_its_dict(tmp_path):
    from ann2snn.plots import plot_layer_fidelity
    from converter.diagnostics import FidelityReport, LayerFidelity

    row = LayerFidelity("if_1", "_1", 2.0, 4, 0.9, 0.05, 0.0, 0.0, 0.2, 0.25, points=[(0.2, 0.25), (0.5, 0.5)])
    report = FidelityReport(8, 2, [row, row], None, 2.0, 1 / 16)
    for given, name in ((report, "object.png"), (report.to_dict(), "dict.png")):
        path = plot_layer_fidelity(given, tmp_path / name, "t")
        assert matplotlib.image.imread(path).shape[:2] == (FIDELITY_PANEL_PX + 40, 2 * FIDELITY_PANEL_PX)
    with pytest.raises(ValueError, match="the report has no layers to plot"):
        plot_layer_fidelity(FidelityReport(8, 2, [], None, 2.0, 1 / 16), tmp_path / "none.png", "t")


def test_raster_shows_a_normalised_colour_image_scaled_not_clipped(tmp_path, monkeypatch):
    import warnings

    import matplotlib.axes

    from ann2snn.plots import plot_raster
    from simulator import Raster

    shown, titles = [], []
    imshow, set_title = matplotlib.axes.Axes.imshow, matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", lambda self, a, **kw: shown.append(a) or imshow(self, a, **kw))
    monkeypatch.setattr(
        matplotlib.axes.Axes, "set_title", lambda self, x, **kw: titles.append(x) or set_title(self, x, **kw)
    )
    raster = Raster("if_1", torch.zeros(4, 2, dtype=torch.bool), torch.tensor([0, 1]), 0, 2, 1, 3)
    image = torch.linspace(-2, 2, 3 * 4 * 4).view(3, 4, 4)  # [C, H, W] normalised: mean 0, values in [-2, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when it clips RGB data
        plot_raster(raster, image, tmp_path / "r.png", "t")
    (picture,) = shown
    assert picture.shape == (4, 4, 3) and float(picture.min()) == 0.0 and float(picture.max()) == 1.0
    assert picture[0, 0, 0] == 0.0 and picture[-1, -1, -1] == 1.0  # min-max, not clipped at 0 and 1
    assert titles[0] == "input (label 3)\ncolours scaled from [-2, 2]"
    shown.clear()
    titles.clear()
    plot_raster(raster, image.sub(-2).div(4), tmp_path / "r.png", "t")  # already in [0, 1]: as it is
    assert (
        torch.equal(torch.as_tensor(shown[0]), image.sub(-2).div(4).permute(1, 2, 0)) and titles[0] == "input (label 3)"
    )
