"""convert --target NAME (and the job-file key ``target``, ``Job(target=)``,
``pipeline.target_settings``): the target's settings, files that pass its check, refusals."""

import json

import nir
import pytest
from click.testing import CliRunner

from ann2snn.cli import main
from ann2snn.jobfile import JobFileError, read_job
from ann2snn.pipeline import Job, target_settings
from exporters.targets import check_file
from tests.cli_fixtures import FACTORY, FAST, write_checkpoints

RESNET = "ann2snn.zoo.mnist_resnet:MnistResNet"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return write_checkpoints(tmp_path_factory.mktemp("checkpoints"))


def _job(**kwargs):
    from ann2snn.models import ModelSpec
    from ann2snn.pipeline import ModelEntry

    entry = ModelEntry("m", ModelSpec(factory=FACTORY, no_weights=True))
    return Job((entry,), ("99.9%",), (4,), out=".", **kwargs)


def test_target_settings():
    assert target_settings("speck2f") == {
        "weight_bits": 8,
        "state_bits": 16,
        "reset": "subtract",
        "bias": "none",
        "readout": "spike_count",
        "encoding": "rate",
    }
    assert target_settings("loihi2")["weight_bits"] == 7 and target_settings("loihi2")["reset"] == "zero"
    assert target_settings(None) == {}
    with pytest.raises(ValueError, match="unknown target 'tpu': known targets are int8, loihi2, speck2f, spinnaker2"):
        target_settings("tpu")


def test_job_takes_the_target_and_refuses_a_contradiction():
    job = _job(target="speck2f")
    assert (job.weight_bits, job.state_bits, job.encoding, job.readout) == (8, 16, "rate", "spike_count")
    assert job.settings()["target"] == "speck2f" and "target" not in _job().settings()
    assert _job(target="speck2f", weight_bits=8).weight_bits == 8  # the same value is fine
    with pytest.raises(ValueError, match="target speck2f sets weight_bits=8, got weight_bits=4"):
        _job(target="speck2f", weight_bits=4)
    with pytest.raises(ValueError, match="target loihi2 sets encoding='rate', got encoding='poisson'"):
        _job(target="loihi2", encoding="poisson")
    assert _job(target="loihi2", readout="membrane").readout == "spike_count"  # the default is not a choice
    assert _job(target="spinnaker2").weight_bits is None  # spinnaker2 sets no widths: a float file


def test_convert_target_speck2f_writes_a_fitting_file(checkpoints, tmp_path):
    args = ["convert", "--model", FACTORY, "--weights", str(checkpoints["plain"]), "--mode", "99.9%", "--T", "4"]
    result = CliRunner().invoke(main, [*args, "--target", "speck2f", "--out", str(tmp_path), *FAST])
    assert result.exit_code == 0, result.output
    path = tmp_path / "plain_p99.9_T4.nir"
    report = check_file(path, "speck2f")
    assert report.fits and [r["core"] for r in report.resources] == [0, 1, 2, 3]
    graph = nir.read(path)
    assert str(graph.metadata["input_encoding"]) == "rate" and int(graph.metadata["weight_bits"]) == 8
    assert not any(abs(n.bias).max() for n in graph.nodes.values() if isinstance(n, (nir.Conv2d, nir.Affine)))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["settings"]["target"] == "speck2f" and summary["rows"][0]["status"] == "converted"


def test_convert_target_refuses_what_does_not_fit(tmp_path):
    args = ["convert", "--model", RESNET, "--no-weights", "--mode", "99.9%", "--T", "4", "--target", "speck2f"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path), *FAST])
    assert result.exit_code == 1
    row = json.loads((tmp_path / "summary.json").read_text())["rows"][0]
    # the residual adds sum currents into a neuron (Sinabs joins only spikes, before a conv),
    # the identity skips' Scale nodes have no core, and the last block's 3x3 pool is not 1/2/4
    assert row["error"].startswith("does not fit speck2f (6 violations): ")
    for text in (
        "if_relu_1: inputs of a neuron layer: 2 (block1.conv_b, scale_add_stem_2)",
        "scale_add_stem_2: node type: Scale",
        "if_relu_5: sum pooling: 3x3 stride 3x3",
    ):
        assert text in row["error"]
    assert "FAILED MnistResNet" in result.output and "does not fit speck2f" in result.output
    assert (tmp_path / "MnistResNet_p99.9_T4.nir").is_file()  # kept, for ann2snn check


def test_convert_target_usage_errors(checkpoints, tmp_path):
    args = ["convert", "--model", FACTORY, "--weights", str(checkpoints["plain"]), "--out", str(tmp_path)]
    unknown = CliRunner().invoke(main, [*args, "--target", "tpu"])
    assert unknown.exit_code == 2
    assert "unknown target 'tpu': known targets are int8, loihi2, speck2f, spinnaker2" in unknown.output
    clash = CliRunner().invoke(main, [*args, "--target", "loihi2", "--weight-bits", "8"])
    assert clash.exit_code == 2 and "target loihi2 sets weight_bits=7, got weight_bits=8" in clash.output


def test_an_explicit_default_that_the_target_sets_otherwise_is_a_usage_error(checkpoints, tmp_path):
    args = ["convert", "--model", FACTORY, "--weights", str(checkpoints["plain"]), "--out", str(tmp_path)]
    for option, value, wanted in (("--readout", "membrane", "spike_count"), ("--encoding", "constant", "rate")):
        key = option[2:]
        result = CliRunner().invoke(main, [*args, "--target", "speck2f", option, value])
        assert result.exit_code == 2, result.output
        assert f"target speck2f sets {key}={wanted!r}, got {key}={value!r} (given explicitly" in result.output
    assert not list(tmp_path.iterdir())  # refused before any work
    with pytest.raises(ValueError, match="target speck2f sets readout='spike_count', got readout='membrane'"):
        _job(target="speck2f", readout="membrane", explicit=("readout",))
    assert _job(target="speck2f", readout="spike_count", explicit=("readout",)).readout == "spike_count"


#: A job file's lines after the target keys: one factory model, no weights.
JOB_BODY = f'modes = ["max"]\nT = [4]\n[[models]]\nname = "a"\nmodel = "{FACTORY}"\nno_weights = true\n'


def test_job_file_key_that_the_target_sets_otherwise_is_refused(tmp_path):
    path = tmp_path / "job.toml"
    body = JOB_BODY
    path.write_text('target = "speck2f"\nreadout = "membrane"\n' + body)
    with pytest.raises(JobFileError, match="target speck2f sets readout='spike_count', got readout='membrane'"):
        read_job(path)
    path.write_text('target = "speck2f"\nreadout = "spike_count"\n' + body)
    assert read_job(path).readout == "spike_count"
    path.write_text('target = "speck2f"\n' + body)
    assert read_job(path).explicit == ()


def test_target_bias_leak_settings_and_refusals():
    assert target_settings("speck2f", "leak") == {**target_settings("speck2f"), "bias": "leak", "bias_bits": 8}
    assert target_settings("speck2f", "none") == target_settings("speck2f")
    with pytest.raises(ValueError, match="target loihi2 has no target_bias 'leak': it takes none, keep"):
        target_settings("loihi2", "leak")
    with pytest.raises(ValueError, match="target int8 has no target_bias 'keep': it takes none$"):
        target_settings("int8", "keep")
    assert target_settings("loihi2", "keep") == {**target_settings("loihi2"), "bias": "keep", "bias_bits": 13}
    with pytest.raises(ValueError, match="target_bias='leak' needs a target"):
        _job(target_bias="leak")
    job = _job(target="speck2f", target_bias="leak")
    assert job.settings()["target_bias"] == "leak" and "target_bias" not in _job(target="speck2f").settings()


def test_convert_target_speck2f_bias_leak_keeps_8_bit_biases(checkpoints, tmp_path):
    args = ["convert", "--model", FACTORY, "--weights", str(checkpoints["plain"]), "--mode", "99.9%", "--T", "4"]
    result = CliRunner().invoke(
        main, [*args, "--target", "speck2f", "--target-bias", "leak", "--out", str(tmp_path), *FAST]
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "plain_p99.9_T4.nir"
    report = check_file(path, "speck2f")
    assert report.fits and report.notes[0].startswith("biases kept as Speck's leak")
    graph = nir.read(path)
    biases = [abs(n.bias).max() for n in graph.nodes.values() if isinstance(n, (nir.Conv2d, nir.Affine))]
    assert max(biases) > 0 and max(biases) <= 127  # kept, 8-bit
    assert json.loads(str(graph.metadata["quantization"]))["bias"] == "leak"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["settings"]["target_bias"] == "leak" and summary["rows"][0]["status"] == "converted"
    bad = CliRunner().invoke(main, [*args, "--target", "loihi2", "--target-bias", "leak", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "target loihi2 has no target_bias 'leak': it takes none, keep" in bad.output


def test_job_file_target(tmp_path):
    path = tmp_path / "job.toml"
    body = JOB_BODY
    path.write_text('target = "int8"\n' + body)
    job = read_job(path)
    assert (job.target, job.weight_bits, job.state_bits) == ("int8", 8, 16)
    path.write_text('target = "loihi3"\n' + body)
    with pytest.raises(JobFileError, match="unknown target 'loihi3': known targets are"):
        read_job(path)
    path.write_text('target = "speck2f"\ntarget_bias = "leak"\n' + body)
    assert read_job(path).target_bias == "leak"
    path.write_text("target = 3\n" + body)
    with pytest.raises(JobFileError, match="'target' = 3 has the wrong type"):
        read_job(path)


def test_convert_spike_rule_signed_and_the_targets_that_refuse_it(checkpoints, tmp_path):
    args = ["convert", "--model", FACTORY, "--weights", str(checkpoints["plain"]), "--mode", "99.9%", "--T", "4"]
    result = CliRunner().invoke(main, [*args, "--spike-rule", "signed", "--out", str(tmp_path / "s"), *FAST])
    assert result.exit_code == 0, result.output
    graph = nir.read(tmp_path / "s" / "plain_p99.9_T4.nir")
    rules = {str(n.metadata["spike_rule"]) for n in graph.nodes.values() if isinstance(n, nir.IF)}
    assert rules == {"signed"}
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["settings"]["spike_rule"] == "signed" and summary["rows"][0]["status"] == "converted"
    assert "spike_rule" not in _job().settings()  # the default leaves earlier results' settings alone
    speck = CliRunner().invoke(main, [*args, "--spike-rule", "signed", "--target", "speck2f", "--out", str(tmp_path)])
    assert speck.exit_code == 2 and "target speck2f takes unsigned spikes only" in speck.output
    loihi = CliRunner().invoke(main, [*args, "--spike-rule", "signed", "--target", "loihi2", "--out", str(tmp_path)])
    assert loihi.exit_code == 2 and "target loihi2 sets spike_rule='>', got spike_rule='signed'" in loihi.output
    assert _job(target="loihi2").spike_rule == ">"
    with pytest.raises(ValueError, match="spike_rule must be one of"):
        _job(spike_rule="sign")
    job = tmp_path / "job.toml"
    models = f'modes = ["max"]\nT = [4]\n[[models]]\nmodel = "{FACTORY}"\nno_weights = true\n'
    job.write_text('spike_rule = "multi"\n' + models)
    assert read_job(job).spike_rule == "multi"
    job.write_text("spike_rule = 1\n" + models)
    with pytest.raises(JobFileError, match="spike_rule"):
        read_job(job)


def test_spike_rule_settings_and_the_recurrent_profile():
    assert "spike_rule" not in _job(target="loihi2").settings()  # the target's own rule: earlier results match
    assert _job(spike_rule=">").settings()["spike_rule"] == ">"
    with pytest.raises(ValueError, match="export_profile='recurrent' encodes one spike per step"):
        _job(spike_rule="signed", export_profile="recurrent")
    assert _job(spike_rule=">", export_profile="recurrent").spike_rule == ">"
