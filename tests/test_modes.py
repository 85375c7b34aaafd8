import pytest

from converter import parse_mode


@pytest.mark.parametrize(
    "mode,kind,value,file_name",
    [
        ("max", "max", 1.0, "max"),
        ("99.9%", "percentile", 99.9, "p99.9"),
        ("1/2", "fraction", 0.5, "f0.5"),
        (0.5, "fraction", 0.5, "f0.5"),
        ("1/3", "fraction", 1 / 3, "f0.333"),
        ("100%", "percentile", 100, "p100"),
        ("1", "fraction", 1.0, "f1"),
    ],
)
def test_parse(mode, kind, value, file_name):
    m = parse_mode(mode)
    assert (m.kind, m.value, m.file_name) == (kind, pytest.approx(value), file_name)


@pytest.mark.parametrize("bad", ["maximum", "abc%", "0%", "100.1%", "-5%", 0.0, 1.5, "3/2", "1/0", "", None, True])
def test_bad_modes_name_the_value(bad):
    with pytest.raises(ValueError) as err:
        parse_mode(bad)
    assert repr(bad) in str(err.value)
