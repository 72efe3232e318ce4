"""The shared pieces of the command lines (trim_rl.argtypes): checked types, the refusal of a value given
twice, the shared flags and run_command."""

import argparse

import pytest

from trim_rl import argtypes as A


@pytest.mark.parametrize("parse, text, value", [
    (A.seed_int, "0", 0), (A.seed_int, str(2**32 - 1), 2**32 - 1), (A.port_number, "65535", 65535),
    (A.int_at_least(1), "7", 7), (A.nonneg_float, "0", 0.0), (A.positive_float, "1e-3", 1e-3),
    (A.fraction, "1", 1.0), (A.number_in(0.0, 1.0, hi_open=True), "0.5", 0.5),
])
def test_checked_types_take(parse, text, value):
    assert parse(text) == value and type(parse(text)) is type(value)


@pytest.mark.parametrize("parse, text, message", [
    (A.seed_int, "-1", "expected a seed, an integer in [0, 4294967295], got '-1'"),
    (A.seed_int, "1.5", "expected a seed, an integer in [0, 4294967295], got '1.5'"),
    (A.int_at_least(1), "0", "expected an integer >= 1, got '0'"),
    (A.port_number, "65536", "expected an integer in [0, 65535], got '65536'"),
    (A.nonneg_float, "nan", "expected a finite number >= 0, got 'nan'"),
    (A.positive_float, "0", "expected a finite number > 0, got '0'"),
    (A.fraction, "x", "expected a number in [0, 1], got 'x'"),
    (A.number_in(0.0, 1.0, hi_open=True, what="a probability in [0, 1)"), "1", "expected a probability in [0, 1), got '1'"),
])
def test_checked_types_refuse_with_one_message(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as exc:
        parse(text)
    assert str(exc.value) == message


def test_type_names():
    assert A.int_at_least(1).__name__ == "integer >= 1"
    assert A.nonneg_float.__name__ == "finite number >= 0"
    assert A.seed_int.__name__ == "a seed, an integer in [0, 4294967295]"


def test_refuse_repeats_names_the_smallest_repeat():
    A.refuse_repeats([3, 1, 2], str)
    A.refuse_repeats((n for n in "abc"), str)  # any iterable, read once
    with pytest.raises(ValueError, match="^2 twice$"):
        A.refuse_repeats([5, 2, 5, 2], lambda x: f"{x} twice")

    class Mine(ValueError):
        pass

    with pytest.raises(Mine, match="^b$"):
        A.refuse_repeats(iter("bab"), str, Mine)


def test_with_default():
    assert A.with_default("most steps per solution", 30) == "most steps per solution (default 30)"


def _parser(*adders) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="p")
    for add in adders:
        add(ap)
    return ap


def _help_of(ap: argparse.ArgumentParser, flag: str) -> str:
    return next(a.help for a in ap._actions if flag in a.option_strings)


def test_shared_flags_defaults_and_helps():
    ap = _parser(lambda p: A.add_seed(p, "random seed"), lambda p: A.add_host_port(p, 8000),
                 lambda p: A.add_problems(p), lambda p: A.add_limit(p, A.int_at_least(1), where=" of the split"),
                 lambda p: A.add_max_tokens(p, 64, where=" in the run"), lambda p: A.add_max_steps(p, 8),
                 lambda p: A.add_quiet(p, ", and no table"), lambda p: A.add_bootstrap(p, "of the evaluation", 100),
                 A.add_agent_env, A.add_hyperparams)
    args = ap.parse_args([])
    assert vars(args) == {"seed": 0, "host": "127.0.0.1", "port": 8000, "problems": "gsm8k", "limit": None,
                          "max_tokens": 64, "max_steps": 8, "quiet": False, "bootstrap": 1000, "agent": "trim_agg",
                          "env": "math500", "hyperparams": []}
    assert _help_of(ap, "--seed") == "random seed, 0 to 2**32 - 1 (default 0)"
    assert _help_of(ap, "--port") == "port (default 8000; 0: any free port)"
    assert _help_of(ap, "--host") == "address to listen on (default 127.0.0.1)"
    assert _help_of(ap, "--limit") == "only the first N problems of the split"
    assert _help_of(ap, "--max-tokens") == "most tokens per step in the run (default 64)"
    assert _help_of(ap, "--max-steps") == "most steps per solution (default 8)"
    assert _help_of(ap, "--quiet") == "no progress bar, and no table"
    assert _help_of(ap, "--bootstrap") == "bootstrap resamples of the evaluation (default 1000, at most 100)"
    assert _help_of(ap, "--problems").endswith("(default gsm8k)")
    ap.format_help()  # every help formats (a lone % would not)
    args = ap.parse_args(["--seed", "7", "--port", "0", "--limit", "3", "--bootstrap", "100", "--quiet",
                          "--hyperparams", "a:1", "b:2"])
    assert (args.seed, args.port, args.limit, args.bootstrap, args.quiet, args.hyperparams) == (7, 0, 3, 100, True,
                                                                                                 ["a:1", "b:2"])
    with pytest.raises(SystemExit):
        ap.parse_args(["--bootstrap", "101"])


def test_add_port_names_where():
    ap = _parser(lambda p: A.add_port(p, 8080, "port on 127.0.0.1"))
    assert _help_of(ap, "--port") == "port on 127.0.0.1 (default 8080; 0: any free port)"
    assert ap.parse_args([]).port == 8080


def test_run_command(capsys):
    ap = A.OneLineParser(prog="cmd")
    ap.add_argument("--n", type=int, default=1)

    def body(args):
        if args.n < 0:
            raise ValueError(f"--n {args.n}: expected a count")
        return args.n

    assert A.run_command(ap, ["--n", "3"], body) == 3
    assert A.run_command(ap, ["--n", "-1"], body) == 2
    assert capsys.readouterr().err == "cmd: --n -1: expected a count\n"
    with pytest.raises(SystemExit) as exc:
        A.run_command(ap, ["--n", "x"], body)
    assert exc.value.code == 2


def test_add_field_flags_from_a_dataclass():
    from dataclasses import dataclass, field

    @dataclass(frozen=True)
    class Config:
        url: str | None = field(default=None, metadata=A.flag("the server", "engines", required=True, nargs="+"))
        extra: tuple[str, ...] = field(default=(), metadata=A.flag("repeatable", "engines", action="append"))
        size: int = field(default=4, metadata=A.flag("slots (default %(default)s)", "requests", type=A.int_at_least(1)))
        mb: float = field(default=8.0, metadata=A.flag("body size", flag="--body-mb"))
        hidden: int = 0  # no metadata: no flag

    ap = A.OneLineParser(prog="cmd")
    groups = A.add_field_flags(ap, Config)
    assert list(groups) == ["engines", "requests"]
    assert [a.dest for a in groups["engines"]._group_actions] == ["url", "extra"]
    assert "slots (default 4)" in ap.format_help()
    args = ap.parse_args(["--url", "a", "b", "--extra", "x", "--extra", "y"])
    assert (args.url, args.extra, args.size, args.body_mb) == (["a", "b"], ["x", "y"], 4, 8.0)
    assert not hasattr(args, "hidden")
    assert ap.parse_args(["--url", "a"]).extra == []  # the append default is a fresh list, not the field's tuple
    with pytest.raises(SystemExit):
        ap.parse_args(["--url", "a", "--size", "0"])
    with pytest.raises(SystemExit):
        ap.parse_args([])  # --url is required
    only = A.OneLineParser(prog="cmd")
    A.add_field_flags(only, Config, names=("mb", "size"))  # only these, in this order
    assert [a.dest for a in only._actions[1:]] == ["body_mb", "size"]


def test_add_command_describes_it_by_its_function():
    def frobnicate(args):
        """Frobnicate the widgets: every one,
        twice."""

    ap = A.OneLineParser(prog="cmd")
    sub = ap.add_subparsers(dest="cmd")
    p = A.add_command(sub, "frob", frobnicate, "frobnicate")
    assert p.description == "Frobnicate the widgets: every one,\ntwice."
    assert "Frobnicate the widgets: every one, twice." in p.format_help()
    assert "frobnicate" in ap.format_help()
