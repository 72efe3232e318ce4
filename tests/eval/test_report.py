"""The frontier plot tells every policy apart."""

from trim_rl.eval.report import line_styles


def test_line_styles_stay_distinct_past_ten_policies():
    styles = line_styles(23)
    assert len(set(styles)) == 23
    assert styles[0][0] == styles[10][0] and styles[0][1] != styles[10][1]
    assert len(set(line_styles(40))) == 40
