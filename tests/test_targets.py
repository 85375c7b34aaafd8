"""exporters.targets: each rule of each target planted once and reported by name, Sinabs' memory
formula by hand, the core mapping, unknown targets, and ``ann2snn check``'s lines, JSON and exit codes."""

import json

import nir
import numpy as np
import pytest
from click.testing import CliRunner

from ann2snn.cli import main
from exporters.targets import TARGETS, Violation, check, check_file, target
from exporters.targets.base import Layer, bits_signed, bits_unsigned
from exporters.targets.speck2f import fitting_cores, map_cores, memory
from tests.target_graphs import chain, fan_out

INTEGER_TARGETS = ("speck2f", "loihi2", "int8")
LOIHI_OK = {"reset": "zero", "spike_rule": ">", "pool": 0, "weight_max": 63.0}  # what a fitting Loihi 2 graph needs


def _lines(graph, name):
    return [v.line() for v in check(graph, name).violations]


def _layer(c_in, c_out, k, hw, bias=True):
    w = np.ones((c_out, c_in, k, k))
    return Layer(
        "conv",
        "if",
        "IF",
        (k, k),
        (1, 1),
        c_in,
        c_out,
        hw,
        w,
        np.ones(c_out) if bias else None,
        np.ones(c_out),
        "subtract",
        [],
        [],
        1,
    )


# --- fitting graphs ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["speck2f", "spinnaker2", "int8"])
def test_the_planted_chain_fits(name):
    report = check(chain(), name)
    assert report.violations == [] and report.fits and report.quantised


def test_a_loihi_shaped_chain_fits_loihi2():
    assert _lines(chain(**LOIHI_OK), "loihi2") == []


# --- Speck 2f shape rules -----------------------------------------------------------------------


def test_speck_kernel_17():
    assert _lines(chain(kernel=17, size=24), "speck2f") == ["conv0: kernel size: 17 (limit: <= 16)"]


def test_speck_stride_3():
    assert _lines(chain(stride=3, size=32), "speck2f") == ["conv0: stride: 3 (limit: 1/2/4/8)"]


def test_speck_1025_channels():
    lines = _lines(chain(channels=1025), "speck2f")
    assert "conv0: output channels: 1025 (limit: <= 1024)" in lines
    assert "conv1: input channels: 1025 (limit: <= 1024)" in lines
    # conv0's neurons: 1025 * 2^(4 + 4) = 262400 > 65536; conv1's kernel memory:
    # 1025 * 2^(ceil(log2 9) + ceil(log2 4)) = 1025 * 64 = 65600 > 65536
    budget = "(limit: a free core with kernel <= 65536, neuron <= 65536, bias <= 1024)"
    assert f"conv0: core memory: kernel 32768, neuron 262400, bias 1025 {budget}" in lines
    assert f"conv1: core memory: kernel 65600, neuron 256, bias 4 {budget}" in lines
    assert len(lines) == 4


def test_speck_three_destinations():
    assert _lines(fan_out(3), "speck2f") == ["if0: destinations: 3 (conv1, extra1, extra2) (limit: <= 2)"]
    assert _lines(fan_out(2), "speck2f") == []


def test_speck_pool_3_and_membrane_readout_and_constant_input():
    pool = "if0: sum pooling: 3x3 stride 3x3 (limit: 1/2/4, square, stride = kernel)"
    assert _lines(chain(pool=3), "speck2f") == [pool]
    assert _lines(chain(readout="membrane"), "speck2f") == [
        "out_neuron: spiking layer: membrane readout (I) (limit: IF neurons)"
    ]
    assert _lines(chain(encoding="constant"), "speck2f") == [
        "input: input: constant analog current (needs input_encoding='rate') (limit: spikes (events))"
    ]


def test_speck_ten_layers_do_not_fit_nine_cores():
    graph = chain(pool=0)
    prev = "if1"
    graph.edges.remove(("if1", "flat"))
    for i in range(7):  # 3 + 7 = 10 weighted layers
        graph.nodes[f"c{i}"] = nir.Conv2d((12, 12), np.ones((4, 4, 1, 1)), 1, 0, 1, 1, np.zeros(4))
        graph.nodes[f"n{i}"] = graph.nodes["if1"].__class__(
            r=np.ones((4, 12, 12)), v_threshold=np.full((4, 12, 12), 100.0), v_reset=np.zeros((4, 12, 12))
        )
        graph.edges += [(prev, f"c{i}"), (f"c{i}", f"n{i}")]
        prev = f"n{i}"
    graph.edges.append((prev, "flat"))
    report = check(graph, "speck2f")
    assert report.violations[0].line() == "graph: cores: 10 layers (limit: 9 layers)"
    assert [r["core"] for r in report.resources] == [0, 1, 2, 3, 4, 5, 6, 7, 8, None]


def test_speck_current_join_and_scale_node():
    graph = chain()
    graph.nodes["skip"] = nir.Scale(np.ones((4, 5, 5)))
    graph.edges += [("pool0", "skip"), ("skip", "if1")]  # a residual add of currents into if1
    assert _lines(graph, "speck2f") == [
        "if1: inputs of a neuron layer: 2 (conv1, skip) (limit: 1 (Merge joins spikes before a conv))",
        "skip: node type: Scale (limit: conv/linear, IF, sum pool, flatten)",
    ]


# --- rules several targets share ----------------------------------------------------------------


WIDER = [("speck2f", 128, 9, 8), ("int8", 128, 9, 8), ("loihi2", 64, 8, 7)]


@pytest.mark.parametrize(("name", "top", "width", "limit"), WIDER)
def test_weights_one_bit_too_wide(name, top, width, limit):
    # Loihi 2: 7 bits, since Lava's mixed-sign 8-bit synapse drops the lowest bit (truncate_weights)
    extra = LOIHI_OK if name == "loihi2" else {}
    line = f"conv0: weight bits: {width} bits (limit: {limit} bits)"
    assert _lines(chain(**{**extra, "weight_max": float(top)}), name) == [line]
    assert _lines(chain(**{**extra, "weight_max": -float(top)}), name) == [line]
    assert _lines(chain(**{**extra, "weight_max": float(top - 1)}), name) == []


@pytest.mark.parametrize("name", INTEGER_TARGETS)
def test_two_thresholds_in_a_layer(name):
    extra = LOIHI_OK if name == "loihi2" else {}
    graph = chain(thresholds=[100, 100, 200, 200], **extra)
    assert _lines(graph, name) == ["if0: one threshold per layer: 2 thresholds (limit: 1)"]


@pytest.mark.parametrize("name", ["speck2f", "loihi2"])
def test_a_bias_on_a_bias_free_target(name):
    extra = LOIHI_OK if name == "loihi2" else {}
    assert _lines(chain(bias=5.0, **extra), name) == [
        "conv0: bias: 4 non-zero biases (limit: none)",
        "conv1: bias: 4 non-zero biases (limit: none)",
    ]
    assert _lines(chain(bias=5.0), "int8") == []  # int8 takes 16-bit biases
    assert _lines(chain(bias=32768.0), "int8") == [
        "conv0: bias bits: 17 bits (limit: 16 bits)",
        "conv1: bias bits: 17 bits (limit: 16 bits)",
    ]


def test_speck_biases_as_a_leak():
    # converted with --target-bias leak (the record says bias "leak"): biases allowed, 8 bits
    report = check(chain(bias=5.0, quant_bias="leak"), "speck2f")
    assert report.violations == [] and report.fits
    assert report.notes[0].startswith("biases kept as Speck's leak (convert --target-bias leak)")
    assert report.notes[1:] == [
        "conv0: 4 of 4 biases (leaks) are positive",
        "conv1: 4 of 4 biases (leaks) are positive",
    ]
    assert [r["bias_memory"] for r in report.resources] == [4, 4, 3]
    assert _lines(chain(bias=-128.0, quant_bias="leak"), "speck2f") == [
        "conv0: bias bits: 9 bits (limit: 8 bits)",
        "conv1: bias bits: 9 bits (limit: 8 bits)",
    ]
    assert check(chain(bias=-127.0, quant_bias="leak"), "speck2f").notes[1:] == []  # negative: no note
    # without the opt-in a bias stays a violation, and the report says how to keep it
    plain = check(chain(bias=5.0), "speck2f")
    assert [v.rule for v in plain.violations] == ["bias", "bias"]
    assert plain.notes == ["a bias is Speck's leak: convert with --target-bias leak to keep the biases as one"]
    assert check(chain(bias=5.0, quant_bias="keep"), "speck2f").violations == plain.violations


def test_loihi2_biases_kept_on_purpose():
    # a record saying bias "keep" (--target-bias keep): biases are lava-nc's bias_mant, 13 bits
    report = check(chain(bias=4095.0, quant_bias="keep", **LOIHI_OK), "loihi2")
    assert report.violations == [] and report.notes[-1].startswith("biases kept (convert --target-bias keep)")
    assert _lines(chain(bias=4096.0, quant_bias="keep", **LOIHI_OK), "loihi2") == [
        "conv0: bias bits: 14 bits (limit: 13 bits)",
        "conv1: bias bits: 14 bits (limit: 13 bits)",
    ]
    assert [v.rule for v in check(chain(bias=5.0, quant_bias="none", **LOIHI_OK), "loihi2").violations] == [
        "bias",
        "bias",
    ]
    assert check(chain(bias=5.0, quant_bias="leak", **LOIHI_OK), "loihi2").violations != []  # Speck's label


def test_reset_rule_and_reset_value():
    # Loihi 2 resets to zero only: a file that subtracts is refused layer by layer
    lines = _lines(chain(**{**LOIHI_OK, "reset": "subtract"}), "loihi2")
    assert lines == [f"{n}: reset: subtract (limit: zero)" for n in ("if0", "if1", "out_neuron")]
    # reset to zero must go to 0 on Speck and Loihi 2 (no reset value there); int8 takes any
    assert _lines(chain(reset="zero", v_reset=10.0), "speck2f") == [
        f"{n}: reset value: v_reset = 10 (limit: v_reset = 0)" for n in ("if0", "if1", "out_neuron")
    ]
    assert _lines(chain(**LOIHI_OK, v_reset=-3.0), "loihi2") == [
        f"{n}: reset value: v_reset = -3 (limit: v_reset = 0)" for n in ("if0", "if1", "out_neuron")
    ]
    assert _lines(chain(reset="zero", v_reset=10.0), "int8") == []


def test_loihi2_spike_rule_pool_join_split():
    assert _lines(chain(**{**LOIHI_OK, "spike_rule": ">="}), "loihi2") == [
        f"{n}: spike rule: v >= V_th (limit: v > V_th)" for n in ("if0", "if1", "out_neuron")
    ]
    assert _lines(chain(**{**LOIHI_OK, "pool": 2}), "loihi2") == [
        "pool0: pool / average nodes: SumPool2d (limit: none (lava-dl NIR))"
    ]
    assert any("converter.fold_sum_pools" in n for n in check(chain(**{**LOIHI_OK, "pool": 2}), "loihi2").notes)
    assert not any("fold_sum_pools" in n for n in check(chain(**LOIHI_OK), "loihi2").notes)
    joined = chain(**LOIHI_OK)
    joined.edges.append(("input", "if1"))
    assert _lines(joined, "loihi2") == [
        "input: splits: 2 destinations (limit: one destination (lava-dl NIR))",
        "if1: concat / join nodes: 2 inputs (limit: one input (lava-dl NIR))",
    ]


def test_loihi2_threshold_is_17_bits_unsigned():
    graph = chain(**LOIHI_OK)
    graph.nodes["if1"].v_threshold = np.full_like(graph.nodes["if1"].v_threshold, 2.0**17 - 1)
    assert _lines(graph, "loihi2") == []  # 131071: the largest vth (lif/models.py: "0 to 131071")
    graph.nodes["if1"].v_threshold = np.full_like(graph.nodes["if1"].v_threshold, 2.0**17)
    assert _lines(graph, "loihi2") == ["if1: threshold bits: 18 bits (limit: 17 bits unsigned)"]
    assert (bits_unsigned(np.array([131071.0])), bits_signed(np.array([131071.0]))) == (17, 18)
    assert (bits_signed(np.array([127.0])), bits_signed(np.array([-128.0])), bits_signed(np.array([128.0]))) == (
        8,
        9,
        9,
    )


@pytest.mark.parametrize("name", INTEGER_TARGETS)
def test_a_float_file_says_not_quantised_and_what_to_run(name):
    extra = LOIHI_OK if name == "loihi2" else {}
    report = check(chain(quantised=False, **extra), name)
    assert not report.quantised
    assert [v.line() for v in report.violations] == [
        f"graph: not quantised: float weights: run ann2snn convert --target {name} (limit: 8-bit integer weights)"
    ]


def test_spinnaker2_checks_the_reset_only_and_says_so():
    report = check(chain(quantised=False, weight_max=1000.0), "spinnaker2")
    assert report.violations == []
    assert report.notes == ["weight and state widths unconfirmed: not checked"]


# --- Speck memory and mapping -------------------------------------------------------------------


def test_memory_equals_sinabs_formula_by_hand():
    # kernel = c * 2^(ceil(log2 9) + ceil(log2 4)) = 2 * 2^(4 + 2) = 128; neuron = 4 * 2^(3 + 3) = 256
    assert memory(_layer(2, 4, 3, (5, 5))) == {"kernel": 128, "neuron": 256, "bias": 4}
    # seed CNN's second conv: 32 * 2^(4 + 5) = 16384; 32 * 2^(4 + 4) = 8192
    assert memory(_layer(32, 32, 3, (11, 11), bias=False)) == {"kernel": 16384, "neuron": 8192, "bias": 0}


def test_memory_of_the_planted_chain_by_hand():
    rows = check(chain(), "speck2f").resources
    # conv0: 1 * 2^(4 + 2) = 64 weights; 4 * 2^(4 + 4) = 1024 neurons (14 x 14 -> 16 x 16)
    # conv1: 4 * 2^(4 + 2) = 256; 4 * 2^(3 + 3) = 256 (5 x 5 -> 8 x 8)
    # fc as a 5 x 5 conv over [4, 5, 5]: 4 * 2^(5 + 2) = 512; 3 * 2^(0 + 0) = 3
    assert [(r["layer"], r["kernel_memory"], r["neuron_memory"], r["bias_memory"]) for r in rows] == [
        ("conv0", 64, 1024, 4),
        ("conv1", 256, 256, 4),
        ("fc", 512, 3, 3),
    ]
    assert [(r["core"], r["kernel_budget"], r["neuron_budget"]) for r in rows] == [
        (0, 16384, 65536),
        (1, 16384, 65536),
        (2, 16384, 65536),
    ]


def test_core_mapping_is_a_matching():
    need = {"kernel": 40000, "neuron": 100, "bias": 0}  # only cores 5 and 6 hold 40000 weights
    assert fitting_cores(need) == [5, 6]
    assert map_cores([[5, 6], [5, 6], [5, 6]]) == [5, 6, None]
    # augmenting paths move an earlier layer: layer 0 could take 0 or 1, layer 1 only 0
    assert map_cores([[0, 1], [0]]) == [1, 0]


# --- names, sources -----------------------------------------------------------------------------


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown target 'foo': known targets are int8, loihi2, speck2f, spinnaker2"):
        target("foo")
    with pytest.raises(ValueError, match="known targets"):
        check(None, "bar")


def test_every_limit_cites_a_source():
    for name, module in TARGETS.items():
        for key, limit in module.LIMITS.items():
            assert len(limit.source) > 10, (name, key)
            if limit.value is None:
                assert "not" in limit.source, (name, key)  # an unconfirmed number says so


def test_check_file_names_an_unreadable_file(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match=r"bad.nir: not a readable NIR file \(OSError"):
        check_file(bad, "speck2f")


# --- the CLI ------------------------------------------------------------------------------------


def _write(tmp_path, graph, name="net.nir"):
    path = tmp_path / name
    nir.write(str(path), graph)
    return str(path)


def test_cli_lines_and_exit_codes(tmp_path):
    runner = CliRunner()
    fits = runner.invoke(main, ["check", _write(tmp_path, chain(), "ok.nir"), "--target", "speck2f"])
    assert fits.exit_code == 0, fits.output
    lines = fits.output.splitlines()
    assert lines[0] == (
        "  layer=conv0, neuron=if0, core=0, kernel_memory=64, neuron_memory=1024, bias_memory=4, "
        "kernel_budget=16384, neuron_budget=65536, bias_budget=1024"
    )
    assert lines[-1] == "speck2f: fits"
    path = _write(tmp_path, chain(stride=3, size=32, weight_max=128.0))
    bad = runner.invoke(main, ["check", path, "--target", "speck2f"])
    assert bad.exit_code == 1
    lines = bad.output.splitlines()
    assert lines[:2] == ["conv0: weight bits: 9 bits (limit: 8 bits)", "conv0: stride: 3 (limit: 1/2/4/8)"]
    assert lines[-1] == "speck2f: does not fit (2 violations)"


def test_cli_json_equals_the_table(tmp_path):
    path = _write(tmp_path, chain(stride=3, size=32, bias=4.0, reset="zero", v_reset=2.0))
    runner = CliRunner()
    table = runner.invoke(main, ["check", path, "--target", "speck2f"])
    as_json = runner.invoke(main, ["check", path, "--target", "speck2f", "--json"])
    assert table.exit_code == as_json.exit_code == 1
    data = json.loads(as_json.output)
    assert data["file"] == path and data["target"] == "speck2f" and data["fits"] is False
    rebuilt = [Violation(**v).line() for v in data["violations"]]
    rebuilt += ["  " + ", ".join(f"{k}={v}" for k, v in row.items()) for row in data["resources"]]
    rebuilt += [f"note: {n}" for n in data["notes"]]
    rebuilt.append(f"speck2f: does not fit ({len(data['violations'])} violations)")
    assert rebuilt == table.output.splitlines()
    assert len(data["violations"]) == 6  # stride, 2 biases, 3 reset values


def test_cli_unknown_target_and_bad_file(tmp_path):
    runner = CliRunner()
    path = _write(tmp_path, chain())
    result = runner.invoke(main, ["check", path, "--target", "loihi3"])
    assert result.exit_code == 2
    known = "known targets are int8, loihi2, speck2f, spinnaker2"
    assert f"Invalid value for '--target': unknown target 'loihi3': {known}" in result.output
    bad = tmp_path / "x.nir"
    bad.write_text("hello")
    result = runner.invoke(main, ["check", str(bad), "--target", "int8"])
    assert result.exit_code == 1
    assert "x.nir: not a readable NIR file" in result.output
    assert len(result.output.strip().splitlines()) == 1
