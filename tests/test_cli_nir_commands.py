import json

import pytest
from click.testing import CliRunner

from ann2snn.cli import main
from tests.cli_fixtures import FACTORY, FAST, write_checkpoints


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("converted")
    weights = write_checkpoints(folder / "checkpoints")["plain"]
    result = CliRunner().invoke(
        main,
        [
            "convert",
            "--model",
            FACTORY,
            "--weights",
            str(weights),
            "--mode",
            "max",
            "--T",
            "4",
            "--T",
            "6",
            "--out",
            str(folder),
            *FAST,
        ],
    )
    assert result.exit_code == 0, result.output
    return folder


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_simulate_reports_accuracy_curve_and_spikes_per_layer(converted, tmp_path):
    nir_file = converted / "plain_max_T6.nir"
    result = run("simulate", str(nir_file), "--limit", "10", "--json", "--quiet", "--plot", str(tmp_path / "a.png"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["T"] == 6 and report["samples"] == 10  # T read from the file
    assert len(report["accuracy_per_t"]) == 6
    summary = json.loads((converted / "summary.json").read_text())
    assert report["accuracy"] == summary["rows"][1]["snn_accuracy"]  # the file reproduces the batch's number
    text = run("simulate", str(nir_file), "--limit", "10", "--quiet", "--plot", str(tmp_path / "b.png"))
    assert text.exit_code == 0 and text.output.splitlines()[-1] == f"wrote {tmp_path / 'b.png'}", text.output
    assert "wrote" not in result.stdout  # --json: stdout is the JSON object alone
    # three IF layers: the fourth ReLU became the membrane readout (the converter's default)
    assert len(report["layers"]) == 3 and all(0 <= layer["rate"] <= 1 for layer in report["layers"])
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    text = run("simulate", str(nir_file), "--limit", "10", "--T", "3", "--quiet")
    assert text.exit_code == 0 and "T=3: accuracy" in text.output and "spikes/sample" in text.output


def test_inspect_lists_nodes_in_order_with_shapes_ranges_and_metadata(converted):
    result = run("inspect", str(converted / "plain_max_T4.nir"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[2].startswith("| input ") and "| 1x28x28 " in lines[2]
    assert any("Conv2d" in line and "32x26x26" in line and "weight 32x1x3x3 [" in line for line in lines)
    assert any("| T " in line and "| 4 " in line for line in lines)
    described = json.loads(run("inspect", str(converted / "plain_max_T4.nir"), "--json").stdout)
    assert described["metadata"]["mode"] == "max" and described["nodes"][-1]["type"] == "Output"


def test_plot_accuracy_from_a_summary_and_the_if_rate_figure(converted, tmp_path):
    acc = run("plot", "accuracy", str(converted / "summary.json"), "--out", str(tmp_path / "acc.png"))
    assert acc.exit_code == 0, acc.output
    assert (tmp_path / "acc.png").read_bytes()[:4] == b"\x89PNG"
    rate = run("plot", "if-rate", "--T", "20", "--v-init", "0", "--v-init", "0.5", "--out", str(tmp_path / "r.png"))
    assert rate.exit_code == 0, rate.output
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_library_error_is_one_line_without_traceback_unless_debug(tmp_path):
    bogus = tmp_path / "bogus.nir"
    bogus.write_bytes(b"not hdf5")
    result = run("simulate", str(bogus))
    assert result.exit_code == 1
    assert "not a NIR file" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    debug = run("inspect", str(bogus), "--debug")
    assert debug.exit_code == 1 and type(debug.exception).__name__ == "NIRImportError"


def test_missing_nir_file_is_a_usage_error():
    result = run("inspect", "nowhere.nir")
    assert result.exit_code == 2 and "NIR_FILE" in result.output and "nowhere.nir" in result.output


def test_a_summary_that_is_not_ours_is_a_usage_error(tmp_path):
    (tmp_path / "x.json").write_text("[]")
    result = run("plot", "accuracy", str(tmp_path / "x.json"))
    assert result.exit_code == 2 and "SUMMARY" in result.output


def test_verify_reproduces_the_reference_and_fails_on_a_tampered_file(tmp_path):
    import h5py
    from torch import nn

    from exporters import export_nir
    from simulator import IFNeuron

    model = nn.Sequential(nn.Linear(3, 4), IFNeuron(v_init=0.5))
    path = export_nir(model, tmp_path / "net.nir", T=7, input_shape=(3,))
    ok = CliRunner().invoke(main, ["verify", str(path)])
    assert ok.exit_code == 0 and "reference of 2 inputs over T=7 steps reproduced exactly" in ok.output
    with h5py.File(path, "r+") as f:
        data = f["node/metadata/reference_output"]
        values = data[()]
        values[0, 0, 0] = 1.0 - values[0, 0, 0]
        data[...] = values
    bad = CliRunner().invoke(main, ["verify", str(path)])
    assert bad.exit_code == 1 and "DIFFERS (max |difference| 1)" in bad.output


def test_verify_with_data_compares_the_three_kinds_of_reader(converted):
    nir_file = converted / "plain_max_T6.nir"
    result = run("verify", str(nir_file), "--data", "mnist", "--limit", "20", "--T", "12", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["self_check"]["equal"] and report["T"] == 12
    exact, zero, sinabs = report["readers"]
    assert [r["rules"] for r in report["readers"]] == ["file", "nir", "sinabs"]
    assert all(r["samples"] == 20 for r in report["readers"]) and exact["accuracy"] is not None
    assert set(exact["count_diff"].values()) == {0.0}
    assert sum(zero["count_diff"].values()) > 0  # reset to zero loses the residue: other counts
    assert sum(sinabs["count_diff"].values()) > 0  # V[0] = 0 instead of V_th / 2
    text = run("verify", str(nir_file), "--data", "mnist", "--limit", "20", "--quiet")
    assert text.exit_code == 0 and "reset to zero, v > V_th (NIR; Norse, SpikingJelly)" in text.output


def test_verify_with_data_on_a_file_without_reference(tmp_path):
    from torch import nn

    from exporters import export_nir
    from simulator import IFNeuron

    path = export_nir(
        nn.Sequential(nn.Flatten(), nn.Linear(784, 10), IFNeuron()), tmp_path / "n.nir", input_shape=(1, 28, 28)
    )
    no_t = run("verify", str(path), "--data", "mnist", "--limit", "5")
    assert no_t.exit_code == 2 and "stores no T: pass --T" in no_t.output
    ok = run("verify", str(path), "--data", "mnist", "--limit", "5", "--T", "3", "--quiet")
    assert ok.exit_code == 0 and "no reference vector" in ok.output and "multi-spike" in ok.output
    alone = run("verify", str(path))
    assert alone.exit_code == 1 and "no reference vector" in alone.output


def test_simulate_with_early_exit_reports_mean_steps(converted):
    nir_file = converted / "plain_max_T6.nir"
    full = json.loads(run("simulate", str(nir_file), "--limit", "30", "--T", "40", "--json").stdout)
    args = ("simulate", str(nir_file), "--limit", "30", "--T", "40", "--json")
    fast = json.loads(run(*args, "--early-exit", "3").stdout)
    assert full["mean_steps"] is None and fast["early_exit"] == 3
    assert 3 <= fast["mean_steps"] < 40
    assert abs(fast["accuracy"] - full["accuracy"]) <= 20.0
    text = run("simulate", str(nir_file), "--limit", "10", "--T", "20", "--early-exit", "3", "--quiet")
    assert text.exit_code == 0 and "early exit after 3 stable steps" in text.output
    bad = run("simulate", str(nir_file), "--early-exit", "0")
    assert bad.exit_code == 2 and "--early-exit" in bad.output
