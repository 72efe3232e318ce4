"""The frontier plot tells every policy apart."""

from trim_rl.evaluation.report import PALETTE, line_styles


def test_line_styles_stay_distinct_past_the_palette():
    k = len(PALETTE)
    styles = line_styles(k + 7)
    assert len(set(styles)) == k + 7
    assert len({c for c, _ in styles[:k]}) == k  # no colour used twice before all are used
    assert styles[0][0] == styles[k][0] and styles[0][1] != styles[k][1]
    assert len(set(line_styles(4 * k))) == 4 * k
