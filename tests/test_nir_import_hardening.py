"""Reading NIR files that do not match the installed nir: unknown fields and node types are
refused naming file, node and field; fields nir fills in by default are named in a warning."""

from __future__ import annotations

import warnings

import h5py
import nir
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from ann2snn.cli import main
from exporters import NIRImportError, export_nir, import_nir, read_nir
from simulator import IFNeuron, simulate


def _write(path, v_reset=0.0) -> None:
    """Input [4] -> Affine -> IF -> Flatten -> Affine -> IF -> Output, written by nir."""
    rng = np.random.default_rng(0)
    nodes = {
        "input": nir.Input(np.array([4])),
        "fc1": nir.Affine(rng.normal(0, 1, (6, 4)).astype(np.float32), np.full(6, 0.1, np.float32)),
        "if1": nir.IF(r=np.ones(6, np.float32), v_threshold=np.ones(6, np.float32), v_reset=np.full(6, v_reset)),
        "flat": nir.Flatten(input_type={"input": np.array([6])}, start_dim=0, end_dim=-1),
        "fc2": nir.Affine(rng.normal(0, 1, (3, 6)).astype(np.float32), np.zeros(3, np.float32)),
        "if2": nir.IF(r=np.ones(3, np.float32), v_threshold=np.ones(3, np.float32), v_reset=np.full(3, v_reset)),
        "output": nir.Output(np.array([3])),
    }
    names = list(nodes)
    nir.write(path, nir.NIRGraph(nodes, list(zip(names, names[1:], strict=False))))


def _edit(path, edit) -> None:
    with h5py.File(path, "a") as f:
        edit(f["node"])


@pytest.fixture
def unknown_field(tmp_path):
    path = tmp_path / "newer.nir"
    _write(path)
    _edit(path, lambda g: g["nodes/if1"].create_dataset("tau_ref", data=np.ones(6)))
    return path


def test_unknown_field_is_refused_naming_file_node_and_field(unknown_field):
    for read in (read_nir, import_nir):
        with pytest.raises(NIRImportError) as info:
            read(unknown_field)
        message = str(info.value)
        assert str(unknown_field) in message and "'if1' (IF)" in message and "'tau_ref'" in message
        assert "\n" not in message


def test_unknown_field_of_a_graph_and_of_a_nested_node_is_refused(tmp_path):
    path = tmp_path / "graph_field.nir"
    _write(path)
    _edit(path, lambda g: g.create_dataset("time_unit", data="ms"))
    with pytest.raises(NIRImportError, match=r"the top-level NIR graph \(NIRGraph\) has field\(s\) 'time_unit'"):
        read_nir(path)

    inner = nir.NIRGraph.from_list(nir.Affine(np.ones((2, 2)), np.zeros(2)), nir.IF(np.ones(2), np.ones(2)))
    outer = nir.NIRGraph(
        {"input": nir.Input(np.array([2])), "sub": inner, "output": nir.Output(np.array([2]))},
        [("input", "sub"), ("sub", "output")],
    )
    nested = tmp_path / "nested.nir"
    nir.write(nested, outer)
    _edit(nested, lambda g: g["nodes/sub/nodes/if"].create_dataset("refractory", data=1.0))
    with pytest.raises(NIRImportError, match=r"nested.nir: NIR node 'sub.if' \(IF\) has field\(s\) 'refractory'"):
        read_nir(nested)


def test_unknown_node_type_and_missing_required_field_are_refused(tmp_path):
    newer = tmp_path / "type.nir"
    _write(newer)
    _edit(newer, lambda g: (g["nodes/if2"].__delitem__("type"), g["nodes/if2"].create_dataset("type", data="AdEx")))
    with pytest.raises(NIRImportError, match=r"type.nir: NIR node 'if2' has type 'AdEx', which nir .* does not define"):
        read_nir(newer)

    missing = tmp_path / "missing.nir"
    _write(missing)
    _edit(missing, lambda g: g["nodes/if1"].__delitem__("r"))
    with pytest.raises(NIRImportError, match=r"missing.nir: NIR node 'if1' \(IF\) has no field 'r'"):
        read_nir(missing)


def test_if_without_v_reset_warns_naming_the_nodes_and_reads_zero(tmp_path):
    with_reset, without = tmp_path / "with.nir", tmp_path / "without.nir"
    _write(with_reset)
    _write(without)
    _edit(without, lambda g: (g["nodes/if1"].__delitem__("v_reset"), g["nodes/if2"].__delitem__("v_reset")))
    with pytest.warns(UserWarning) as caught:
        snn = import_nir(without)
    messages = [str(w.message) for w in caught if "v_reset" in str(w.message)]
    assert len(messages) == 1, messages
    assert str(without) in messages[0] and "'if1', 'if2'" in messages[0] and "assumed v_reset = 0" in messages[0]
    assert torch.equal(snn.if1.v_reset, torch.zeros(6)) and torch.equal(snn.if2.v_reset, torch.zeros(3))
    x = torch.rand(5, 4, generator=torch.Generator().manual_seed(0)) * 2
    expected = simulate(import_nir(with_reset), x, 12).outputs
    assert torch.equal(simulate(snn, x, 12).outputs, expected)


def test_any_field_filled_in_by_default_is_named(tmp_path):
    path = tmp_path / "flatten.nir"
    _write(path)
    _edit(path, lambda g: g["nodes/flat"].__delitem__("end_dim"))
    with pytest.warns(
        UserWarning, match=r"flatten.nir: NIR Flatten node\(s\) 'flat' have no 'end_dim' field; assumed end_dim = -1"
    ):
        read_nir(path)


def test_our_own_files_read_without_warnings(tmp_path):
    torch.manual_seed(0)
    snn = nn.Sequential(nn.Linear(4, 5), IFNeuron(), nn.Linear(5, 2), IFNeuron())
    path = export_nir(snn, tmp_path / "ours.nir", T=4, input_shape=(4,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import_nir(path)


def _one_line_error(result, *needles) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert all(needle in lines[0] for needle in needles), lines[0]


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_cli_prints_an_unknown_field_as_one_line(unknown_field, command):
    result = CliRunner().invoke(main, [command, str(unknown_field)])
    _one_line_error(result, "NIRImportError", str(unknown_field), "'if1'", "'tau_ref'")


def test_cli_verify_names_a_defaulted_field_once(tmp_path):
    torch.manual_seed(0)
    snn = nn.Sequential(nn.Linear(4, 5), IFNeuron(), nn.Linear(5, 2), IFNeuron())
    path = export_nir(snn, tmp_path / "old_writer.nir", T=4, input_shape=(4,))
    _edit(path, lambda g: (g["nodes/1"].__delitem__("v_reset"), g["nodes/3"].__delitem__("v_reset")))
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as on the command line (pytest records every warning)
        result = CliRunner().invoke(main, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "v_reset" in line]
    assert lines == [
        f"warning: {path}: NIR IF node(s) '1', '3' have no 'v_reset' field; assumed v_reset = 0 (NIR's default)"
    ]
