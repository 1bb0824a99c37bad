"""The demo's text table: aligned for any width of number, and the K-coordinate
rows summarise all K z-scores against what K normal z's give."""
import numpy as np
from scipy import stats

from mcscore import demo


def test_columns_stay_aligned_for_any_width():
    table = [["name", "estimate", "z"],
             ["a", "1.00000", "0.10"],
             ["b", "123456789.12345", "-12345.67"],
             ["cc", "-0.5", "1"]]
    lines = demo.format_table(table, left=1, notes={2: ["a note"]})
    rows = [l for l in lines if not l.startswith("-") and "note" not in l]
    # right-aligned numeric columns end at the same character in every row
    ends = {len(r) for r in rows}
    assert len(ends) == 1, lines
    starts = [r.index(c[1]) + len(c[1]) for r, c in zip(rows, table)]
    assert len(set(starts)) == 1, lines
    note = lines[lines.index(rows[2]) + 1]
    assert note.strip() == "a note"


def test_expected_max_abs_z_is_the_median_of_the_maximum():
    rng = np.random.default_rng(0)
    for k in (1, 10, 1000):
        m = demo.expected_max_abs_z(k)
        # P(max_j |z_j| <= m) = (2 Phi(m) - 1)^k = 1/2
        assert abs((2 * stats.norm.cdf(m) - 1) ** k - 0.5) < 1e-12
        sims = np.abs(rng.standard_normal((4000, k))).max(axis=1)
        assert abs(np.mean(sims <= m) - 0.5) < 5 * np.sqrt(0.25 / 4000)


def test_z_summary_names_the_expected_maximum():
    z = np.linspace(-3.2, 3.2, 1000)
    line = demo.z_summary(z)
    assert line.startswith("all 1000:") and "max |z| 3.20" in line
    assert "~3.4" in line


def test_core_table_prints_the_summary_under_the_categorical_row():
    lines = []
    demo.run_core(n=2000, seed=0, out=lines.append)
    cat = [i for i, l in enumerate(lines) if l.startswith("Categorical")]
    assert cat and lines[cat[0] + 1].strip().startswith("all 1000:")
    header = next(l for l in lines if l.startswith("distribution"))
    width = len(header)
    body = [l for l in lines[lines.index(header) + 2:] if l and l[0] != " " and not l.startswith("z =")
            and not l.startswith("numpy")]
    # the first row of each case carries the timing columns and ends where the header ends
    assert all(len(l) == width for l in body if l.endswith("x")), body
