from click.testing import CliRunner

from ann2snn.cli import main


def test_demo_writes_six_nir_files_and_png(tmp_path):
    result = CliRunner().invoke(
        main, ["demo", "--limit", "200", "--T", "20", "--out", str(tmp_path), "--quiet", "--check-samples", "20"]
    )
    assert result.exit_code == 0, result.output
    nir_files = sorted(p.name for p in tmp_path.glob("*.nir"))
    stems = [
        "mnist_cnn_f0.2",
        "mnist_cnn_f0.25",
        "mnist_cnn_f0.333",
        "mnist_cnn_f0.5",
        "mnist_cnn_max",
        "mnist_cnn_p99.9",
    ]
    assert nir_files == sorted(f"{stem}_T20.nir" for stem in stems)
    assert {"accuracy_vs_t.png", "summary.csv", "summary.json"} <= {p.name for p in tmp_path.iterdir()}
    assert "on 200 MNIST test images" in result.output
    table_rows = [line for line in result.output.splitlines() if line.startswith("|") and "equal" in line]
    assert len(table_rows) == 6
    assert (tmp_path / "accuracy_vs_t.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_mode_is_a_usage_error_naming_the_option():
    result = CliRunner().invoke(main, ["demo", "--mode", "150%"])
    assert result.exit_code == 2
    assert "--mode" in result.output and "150%" in result.output


def test_help_has_an_example():
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0 and "Example: ann2snn demo" in result.output


def test_old_import_paths_warn_and_give_the_same_objects():
    import importlib
    import sys

    import pytest

    from ann2snn.cli import main as new_main
    from ann2snn.zoo.mnist_cnn import MnistCNN

    for name in ("converter.zoo", "converter.zoo.mnist_cnn"):
        sys.modules.pop(name, None)
    with pytest.warns(DeprecationWarning) as warned:
        old = importlib.import_module("converter.zoo.mnist_cnn")
    assert {str(w.message).split(";")[0] for w in warned} == {
        "converter.zoo moved to ann2snn.zoo",
        "converter.zoo.mnist_cnn moved to ann2snn.zoo.mnist_cnn",
    }
    assert old.MnistCNN is MnistCNN
    from converter.cli import main as old_main

    with pytest.warns(DeprecationWarning, match="ann2snn.cli:main"):
        result = old_main(["--version"], standalone_mode=False)
    assert result == 0 and new_main.name == "main"
