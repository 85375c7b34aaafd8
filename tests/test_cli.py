from click.testing import CliRunner

from converter.cli import main


def test_demo_writes_six_nir_files_and_png(tmp_path):
    result = CliRunner().invoke(
        main, ["demo", "--limit", "200", "--T", "20", "--out", str(tmp_path), "--quiet", "--check-samples", "20"]
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "accuracy_vs_t.png",
        "mnist_cnn_f0.2.nir",
        "mnist_cnn_f0.25.nir",
        "mnist_cnn_f0.333.nir",
        "mnist_cnn_f0.5.nir",
        "mnist_cnn_max.nir",
        "mnist_cnn_p99.9.nir",
    ]
    assert "on 200 MNIST test images" in result.output
    table_rows = [line for line in result.output.splitlines() if line.startswith("|") and "yes" in line]
    assert len(table_rows) == 6
    assert (tmp_path / "accuracy_vs_t.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_mode_is_a_usage_error_naming_the_option():
    result = CliRunner().invoke(main, ["demo", "--mode", "150%"])
    assert result.exit_code == 2
    assert "--mode" in result.output and "150%" in result.output


def test_help_has_an_example():
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0 and "Example: ann2snn demo" in result.output
