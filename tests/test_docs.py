"""The documentation cannot rot: every `vaekit ...` line of the README and docs/ parses with the
real parser, every Python block compiles (the ones marked `<!-- docs-test: run -->` run), the
generated pages cover every subcommand, flag, public name and results record, and the README's
headline figures are the records' own. `make docs` builds the site itself (mkdocs --strict)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest

from vaekit.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.parts)
DOCS = [ROOT / "README.md", *PAGES]
FENCE = re.compile(r"(<!-- docs-test: run -->\n)?```(\w*)[^\n]*\n(.*?)\n```", re.S)
RUN_MARK = "<!-- docs-test: run -->"


def hook():
    """docs/hooks/vaekit_docs.py, the MkDocs hook, loaded by path as MkDocs loads it."""
    spec = importlib.util.spec_from_file_location("vaekit_docs", ROOT / "docs/hooks/vaekit_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blocks(language: str) -> list[tuple[str, bool, str]]:
    """(where, marked to run, code) of every fenced block of that language in the docs."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for m in FENCE.finditer(text):
            if m.group(2) == language:
                line = text[: m.start()].count("\n") + 1
                found.append((f"{path.relative_to(ROOT)}:{line}", bool(m.group(1)), m.group(3)))
    return found


def vaekit_argv(line: str) -> list[str] | None:
    """The vaekit arguments of one shell line (`vaekit ...`, `python -m vaekit ...`, `torchrun
    ... -m vaekit [--] ...`), else None."""
    words = shlex.split(line, comments=True)
    while words and (words[0] == "srun" or re.fullmatch(r"[A-Z_]+=\S*", words[0])):
        words = words[1:]  # a launcher, or an environment variable set for the command
    if words[:1] == ["vaekit"]:
        return words[1:]
    if "-m" in words and words[words.index("-m") + 1 : words.index("-m") + 2] == ["vaekit"]:
        rest = words[words.index("-m") + 2 :]
        return rest[1:] if rest[:1] == ["--"] else rest
    return None


def command_lines() -> list[tuple[str, list[str]]]:
    """Every vaekit command line of the docs' bash blocks, continuation lines joined."""
    lines = []
    for where, _, code in blocks("bash"):
        for line in code.replace("\\\n", " ").splitlines():
            argv = vaekit_argv(line)
            if argv is not None:
                lines.append((where, argv))
    return lines


def test_the_readme_is_at_most_250_lines():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= 250, f"README.md has {n} lines; move detail into docs/"


def test_the_docs_show_vaekit_commands_and_python():
    """The extraction below finds what it checks (a regex that matched nothing would pass)."""
    assert len(command_lines()) >= 30
    assert len(blocks("python")) >= 3
    assert sum(run for _, run, _ in blocks("python")) >= 2


@pytest.mark.parametrize("where,argv", command_lines(), ids=lambda v: str(v)[:60])
def test_every_documented_command_line_parses(where, argv, capsys):
    if argv == ["--version"]:
        return
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: vaekit {' '.join(argv)}: {capsys.readouterr().err.strip()}")
    assert args.command == argv[0]


def test_a_wrong_documented_flag_would_be_caught(capsys):
    """The check above can fail: a misspelt flag does not parse."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sample", "runs/mnist", "--temprature", "1.0"])


@pytest.mark.parametrize("where,run,code", blocks("python"), ids=lambda v: str(v)[:40])
def test_every_python_block_compiles_and_the_marked_ones_run(where, run, code):
    compiled = compile(code, where, "exec")
    if run:
        exec(compiled, {"__name__": "__docs__"})


def test_the_cli_reference_has_every_subcommand_and_flag():
    page = hook().render_cli()
    root = build_parser()
    sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        assert f"## `vaekit {name}`" in page
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in page or f" {flag}" in page, (name, flag)


def test_every_registered_family_has_its_page():
    from vaekit.config import FAMILIES

    h = hook()
    for name in FAMILIES:
        page = ROOT / "docs" / "families" / f"{name}.md"
        assert f"<!-- vaekit:family {name} -->" in page.read_text(), page
        assert f"`--family {name}`" in h.render_family(name)
    with pytest.raises(ValueError, match="unknown family 'nope'"):
        h.render_family("nope")


def test_the_api_reference_documents_every_public_name():
    import vaekit

    h = hook()
    page = h.render_api()
    for name in vaekit.__all__:
        if not name.startswith("_"):
            path = h.defined_at(name)
            assert f"::: {path}\n" in page
            assert path.rsplit(".", 1)[1] == getattr(getattr(vaekit, name), "__name__", name)


def test_every_results_record_is_rendered_with_its_date_and_commit():
    h = hook()
    table = h.results_records()
    for path in sorted((ROOT / "benchmarks/results").glob("*.json")):
        record = json.loads(path.read_text())
        assert f"`{path.name}`" in table
        assert str(record.get("date", "")) in table


def test_every_marker_in_the_docs_expands():
    h = hook()
    for path in PAGES:
        text = h.expand(path.read_text())
        assert "<!-- vaekit:" not in text, path


def test_an_unknown_results_table_is_refused():
    with pytest.raises(ValueError, match="unknown results table 'nope'"):
        hook().expand("<!-- vaekit:results nope -->")


def test_the_readme_headline_figures_are_the_records():
    readme = (ROOT / "README.md").read_text()
    res = ROOT / "benchmarks/results"
    nll = json.loads((res / "results-nll-cpu.json").read_text())["eval"]
    hvae = json.loads((res / "results-nll-hvae-cpu.json").read_text())["eval"]
    iaf = json.loads((res / "results-nll-iaf-cpu.json").read_text())["eval"]
    vamp_iaf = json.loads((res / "results-nll-vamp-iaf-cpu.json").read_text())["eval"]
    quality = json.loads((res / "metrics-final-cpu.json").read_text())["runs"]
    fid = {r["label"]: r["samples"]["fid"] for r in quality if r["temperature"] == 1.0}
    ood = json.loads((res / "ood-cpu.json").read_text())["pairs"]["fashion-mnist vs mnist"]
    ttq = [json.loads((res / f).read_text())["time_to_quality"]
           for f in ("ttq-cpu.json", "ttq-amd-epyc-25-17-bf16-cpu.json")]  # fmt: skip
    flows = json.loads((res / "nll-vamp-iaf-cpu.json").read_text())["models"]
    vamp = json.loads((res / "priors-vamp-iaf-cpu.json").read_text())["models"]["mnist-vamp-iaf"]
    vamp_fid = [vamp["priors"][k]["fid"] for k in ("VampPrior (500 pseudo-inputs)", "gmm")]
    main = json.loads((ROOT / "docs/mnist/eval.json").read_text())["test_loss"]
    for figure in [
        f"**{nll['nll_iw']:.2f}** ± {nll['nll_iw_sem']:.2f} nats",
        f"**{hvae['nll_iw']:.2f}** ± {hvae['nll_iw_sem']:.2f} nats",
        f"**{iaf['nll_iw']:.2f}** ± {iaf['nll_iw_sem']:.2f} nats",
        f"**{vamp_iaf['nll_iw']:.2f}** ± {vamp_iaf['nll_iw_sem']:.2f} nats",
        f"**{fid['mnist-nll']:.2f}** / **{fid['mnist-hvae']:.2f}**",
        f"**{ood['complexity']['auroc']:.3f}**",
        f"{ttq[0]:.3f} / **{ttq[1]:.3f}**",
        " / ".join(f"{flows[k]['nll_iw']:.2f}" for k in ("baseline", "iaf", "vamp"))
        + f" / **{flows['vamp-iaf']['nll_iw']:.2f}** nats",
        f"**{vamp_fid[0]:.2f}** / **{vamp_fid[1]:.2f}**",
        f"**{main:.2f}**",
    ]:
        assert figure in readme, figure
