"""MkDocs hook: the pages that are generated, not written.

A page holds a marker, an HTML comment the hook replaces before the Markdown is rendered:

- ``<!-- vaekit:cli -->``: every subcommand of ``vaekit.cli.build_parser()`` (usage, then one table
  per argument group: flag, default, help), so the reference is the parser's own word;
- ``<!-- vaekit:api -->``: one mkdocstrings block (``::: vaekit.NAME``) per name of
  ``vaekit.__all__``, so the API page follows the package's public names as they change;
- ``<!-- vaekit:family NAME -->``: the family's options (the flags `vaekit train` takes for it,
  from its config dataclass) and the presets of that family, from ``vaekit.config``;
- ``<!-- vaekit:results NAME -->``: a table rendered from ``benchmarks/results/*.json`` (see
  ``RESULTS``), each with the date, commit and CPU of its record.

Pure functions of the parser and the JSON records; nothing here imports torch.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "benchmarks" / "results"
USAGE_WIDTH = 96
MARKER = re.compile(r"<!-- vaekit:(cli|api|family|results) ?([\w-]*) -->")


# --- the CLI reference -----------------------------------------------------------------------


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _flag(action: argparse.Action) -> str:
    """`--out PATH` / `RUN_DIR`: how an argument is written on the command line."""
    names = ", ".join(action.option_strings) or action.dest
    if action.nargs == 0:
        return f"`{names}`"
    metavar = action.metavar or (action.dest.upper() if action.option_strings else "")
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    if action.choices is not None and not action.metavar:
        metavar = "{" + ",".join(map(str, action.choices)) + "}"
    if action.nargs == "+":
        metavar = f"{metavar} [{metavar} ...]"
    return f"`{names} {metavar}`" if action.option_strings else f"`{metavar or names}`"


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The action's help with argparse's %(default)s-style fields expanded."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    return parser._get_formatter()._expand_help(action)  # noqa: SLF001 (argparse's own expansion)


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage line at a fixed width (argparse's own follows the terminal's)."""
    formatter = parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)  # noqa: SLF001
    return formatter.format_help().strip().removeprefix("usage: ")


def render_command(name: str, parser: argparse.ArgumentParser) -> str:
    """One subcommand: its usage line, then a table of each argument group's arguments."""
    usage = _usage(parser)
    lines = [f"## `vaekit {name}`", "", parser.description or "", "", "```text", usage, "```", ""]
    for group in parser._action_groups:  # noqa: SLF001 (argparse keeps its groups here)
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]  # noqa: SLF001
        if not actions:
            continue
        lines += [f"**{group.title}**", "", "| argument | help |", "| --- | --- |"]
        lines += [f"| {_flag(a)} | {_cell(_help(parser, a))} |" for a in actions]
        lines.append("")
    return "\n".join(lines)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's subcommands, name -> parser, in the order they were added."""
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def render_cli() -> str:
    """The whole CLI reference, from `vaekit.cli.build_parser()`."""
    from vaekit.cli import build_parser

    root = build_parser()
    commands = subcommands(root)
    helps = {}
    for action in root._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            helps = {a.dest: a.help or "" for a in action._choices_actions}  # noqa: SLF001
    index = ["| command | what |", "| --- | --- |"]
    index += [f"| [`{n}`](#vaekit-{n}) | {_cell(helps.get(n, ''))} |" for n in commands]
    for name, sub in commands.items():
        if not sub.description:
            sub.description = helps.get(name, "")
    body = [render_command(name, sub) for name, sub in commands.items()]
    return "\n".join(["```text", _usage(root), "```", "", *index, "", *body])


# --- the API reference -----------------------------------------------------------------------


def defined_at(name: str) -> str:
    """Where the public name `vaekit.NAME` is defined (`vaekit.api.sample.sample`), so that
    mkdocstrings finds it however `vaekit/__init__.py` re-exports it (lazily or not)."""
    import vaekit

    value = getattr(vaekit, name)
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and module.startswith("vaekit"):
        return f"{module}.{qualname}"
    lazy = getattr(vaekit, "_LAZY", {})  # a constant (PRESETS): the module it is read from
    return f"{lazy[name]}.{name}" if name in lazy else f"vaekit.{name}"


def render_api() -> str:
    """One mkdocstrings block per public name of `vaekit` (its `__all__`), functions first."""
    import vaekit

    names = [n for n in vaekit.__all__ if not n.startswith("_")]
    functions = [n for n in names if callable(getattr(vaekit, n)) and n[:1].islower()]
    others = [n for n in names if n not in functions]
    blocks = ["### Functions", ""]
    blocks += [f"::: {defined_at(n)}\n" for n in functions]
    blocks += ["### Classes and constants", ""]
    blocks += [f"::: {defined_at(n)}\n" for n in others]
    return "\n".join(blocks)


# --- the model families ------------------------------------------------------------------


def _value(v) -> str:
    return " ".join(map(str, v)) if isinstance(v, tuple) else str(v)


def render_family(name: str) -> str:
    """A family's option flags (name, default, doc) and its presets' values, from vaekit.config."""
    from dataclasses import MISSING, fields

    from vaekit.config import FAMILIES, PRESETS

    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
    family = FAMILIES[name]
    rows = [
        [f"`--{f.name.replace('_', '-')}`", f"`{_value(f.default)}`", f.metadata.get("help", "")]
        for f in fields(family.options)
        if f.default is not MISSING
    ]
    presets = [
        [f"`{p}`", ", ".join(f"`{k}={_value(v)}`" for k, v in values.items())]
        for p, values in PRESETS.items()
        if values.get("family", "vae") == name
    ]
    return "\n\n".join([
        f"`--family {name}`: {family.doc}. Its options, each a flag of `vaekit train` (the "
        "default applies when neither the preset nor a flag sets it):",
        _table(["flag", "default", "what"], rows),
        "Presets of the family (`vaekit train --preset NAME`; every other field keeps its "
        "default):",
        _table(["preset", "values"], presets) if presets else "(none)",
    ])  # fmt: skip


# --- the results pages -----------------------------------------------------------------------


def load(name: str) -> dict:
    """A record of benchmarks/results/ by file name."""
    return json.loads((RESULTS_DIR / name).read_text())


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _cpu(record: dict) -> str:
    hw = record.get("hardware", {})
    lscpu = hw.get("lscpu") or record.get("lscpu") or {}
    cpu = hw.get("cpu", "?")
    if lscpu.get("CPU family"):
        cpu += f" (family {lscpu['CPU family']} model {lscpu.get('Model', '?')})"
    threads = record.get("threads") or hw.get("cpu_count")
    return f"{cpu}, {threads} CPUs visible" if threads else cpu


def provenance(name: str, record: dict | None = None) -> str:
    """The line under a table: which record, its date, commit, CPU and torch."""
    record = record or load(name)
    torch = record.get("hardware", {}).get("torch", "?")
    return (
        f"*Record `benchmarks/results/{name}`: {record.get('date', '?')}, commit "
        f"`{record.get('commit') or '?'}`, {_cpu(record)}, torch {torch}.*"
    )


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


NLL_RECORDS = [  # (record, preset): the full-protocol runs of benchmarks/results_nll.py
    ("results-nll-cpu.json", "mnist-nll"),
    ("results-nll-hvae-cpu.json", "mnist-hvae"),
    ("results-nll-iaf-cpu.json", "mnist-iaf"),
    ("results-nll-vamp-iaf-cpu.json", "mnist-vamp-iaf"),
]


def results_nll() -> str:
    """Test NLL on dynamically binarized MNIST: vaekit's full-protocol records."""
    rows, notes = [], []
    for name, preset in NLL_RECORDS:
        r = load(name)
        e = r["eval"]
        rows.append(
            [
                f"`{preset}`",
                f"**{_num(e['nll_iw'])}** ± {_num(e['nll_iw_sem'])}",
                str(e["iw_samples"]),
                f"{e['num_images']:,}",
                str(e["epoch"]),
                _num(-e["elbo"]),
                _num(e["recon"]),
                _num(e["kl"]),
                _num(e["bits_per_dim"], 4),
                str(e["active_units"]),
                _num(e["probe_accuracy"], 3),
            ]
        )
        notes.append(f"- `{preset}`: " + provenance(name, r))
    header = [
        "preset",
        "test NLL (nats)",
        "K",
        "test images",
        "epoch",
        "-ELBO",
        "recon",
        "KL",
        "bits/dim",
        "active units",
        "probe accuracy",
    ]
    return _table(header, rows) + "\n\n" + "\n".join(notes)


def results_hvae_groups() -> str:
    """KL and active units per latent group of the mnist-hvae result."""
    r = load("results-nll-hvae-cpu.json")
    e = r["eval"]
    groups = zip(e["kl_per_group"], e["active_units_per_group"], strict=True)
    rows = [[str(i), _num(kl), str(au)] for i, (kl, au) in enumerate(groups)]
    return _table(["group (top first)", "KL (nats)", "active units"], rows)


def results_sittings(name: str) -> str:
    """Every sitting of a results_nll.py run: when, how long, threads, CPU, commit."""
    r = load(name)
    rows = []
    for s in r["sittings"]:
        cpu = s.get("cpu") or {}
        where = cpu.get("Model name", "?")
        if cpu.get("CPU family"):
            where += f" (family {cpu['CPU family']} model {cpu.get('Model', '?')})"
        if s.get("gpu"):
            where += f", {s['gpu']}"
        rows.append(
            [
                s.get("start", "?"),
                s.get("command", ""),
                f"{s.get('seconds', 0):,}",
                str(s.get("threads", "")),
                where,
                f"`{s['commit']}`" if s.get("commit") else "",
                s.get("note", ""),
            ]
        )
    header = ["start", "command", "seconds", "threads", "CPU (GPU)", "commit", "note"]
    return _table(header, rows) + "\n\n" + provenance(name, r)


def _quality_rows(record: dict) -> list[list[str]]:
    keys = ["fid", "kid", "precision", "recall", "density", "coverage"]
    floor = record["floor"]["metrics"]
    rows = [["test set vs training set (floor)", "", "", *(_num(floor[k], 3) for k in keys)]]
    for kind in ("samples", "reconstructions"):
        seen = set()
        for run in record["runs"]:
            m = run.get(kind)
            t = f"{run['temperature']}" if kind == "samples" else ""
            if not m or (kind == "reconstructions" and run["label"] in seen):
                continue
            seen.add(run["label"])
            rows.append([run["label"], kind, t, *(_num(m[k], 3) for k in keys)])
    return rows


def results_quality(name: str) -> str:
    """FID, KID, precision/recall, density/coverage of one bench-metrics record."""
    r = load(name)
    header = [
        "run",
        "images",
        "T",
        "FID",
        "KID (x1e3)",
        "precision",
        "recall",
        "density",
        "coverage",
    ]
    return _table(header, _quality_rows(r)) + "\n\n" + provenance(name, r)


def results_priors(name: str = "priors-gmm-cpu.json") -> str:
    """Sample FID, KID, precision and recall of each run with its own prior (N(0, I) or a
    VampPrior) and with a fitted GMM (benchmarks/priors.py), and the #30 targets."""
    r = load(name)
    rows = []
    for run, m in r["models"].items():
        if "priors" not in m:
            rows.append([run, "", "pending", "", "", "", ""])
            continue
        best = m["look"]["best"]
        for prior, q in m["priors"].items():
            label = f"GMM, {best['components']} {best['covariance']}" if prior == "gmm" else prior
            if q.get("samples", True) is None:
                rows.append([run, label, "no samples (no prior)", "", "", "", ""])
                continue
            metrics = [_num(q["fid"]), *(_num(q[k], 3) for k in ("kid", "precision", "recall"))]
            rows.append([run, label, *metrics, f"epoch {m['epoch']}"])
    header = ["run", "prior", "FID", "KID (x1e3)", "precision", "recall", "weights"]
    verdicts = "\n".join(
        f"- {t['target']}: N(0, I) {_num(t['own_fid'])}, GMM {_num(t['gmm_fid'])}"
        + (f" ({t['reduction']:.0%} lower)" if "reduction" in t else "")
        + f": **{'met' if t['met'] else 'missed'}**"
        for t in r["targets"]
    )
    verdicts = verdicts and verdicts + "\n\n"  # none for a record without #30's runs
    return _table(header, rows) + "\n\n" + verdicts + provenance(name, r)


def results_flows(name: str = "nll-vamp-iaf-cpu.json") -> str:
    """Test NLL (IW bound) of runs against a baseline run at the same epochs and seed
    (benchmarks/nll_flows.py): the VampPrior and IAF against mnist-nll, and the targets; or
    bf16 training against fp32."""
    r = load(name)
    header = ["run", "epochs", "NLL (nats)", "-ELBO", "train s"]
    rows = [[name, str(m["epochs"]), f"{m['nll_iw']:.2f} ± {m['nll_iw_sem']:.2f}",
             f"{m['neg_elbo']:.2f}", _num(m.get("train_seconds"))]
            for name, m in r["models"].items()]  # fmt: skip
    verdicts = "\n".join(
        f"- {name}: {c['nats_better']:.2f} ± {c['sem']:.2f} nats better than the baseline"
        + ("" if c["target"] is None else
           f" (target {c['target']}): **{'met' if c['met'] else 'missed'}**")
        for name, c in r["comparisons"].items()
    )  # fmt: skip
    head = f"K = {r['iw_samples']}, the first {r['eval_limit']:,} test images.\n\n"
    return head + _table(header, rows) + "\n\n" + verdicts + "\n\n" + provenance(name, r)


def results_ood() -> str:
    """AUROC / FPR@95 of each score for each (trained on, scored) pair."""
    r = load("ood-cpu.json")
    scores = list(next(iter(r["pairs"].values())))
    rows = [
        [pair, *(f"{m[s]['auroc']:.3f} / {m[s]['fpr_at_95_tpr']:.3f}" for s in scores)]
        for pair, m in r["pairs"].items()
    ]
    return _table(["trained on vs scored", *scores], rows) + "\n\n" + provenance("ood-cpu.json", r)


def results_objectives() -> str:
    """ELBO against IWAE training at equal epochs."""
    r = load("objectives-cpu.json")
    side = r.get("epoch_seconds_side_by_side", {}).get("seconds", {})
    rows = [
        [
            f"`{k}`",
            f"**{_num(v['nll_iw'])}** ± {_num(v['nll_iw_sem'])}",
            _num(-v["elbo"]),
            _num(v["kl"]),
            " / ".join(_num(x) for x in v["test_loss_per_epoch"]),
            _num(side.get(k), 0),
        ]
        for k, v in r["results"].items()
    ]
    header = [
        "objective",
        "test NLL (K=1000, 2,000 images)",
        "-ELBO",
        "KL",
        "test -ELBO by epoch",
        "s per 60k-image epoch (side by side)",
    ]
    return _table(header, rows) + "\n\n" + provenance("objectives-cpu.json", r)


def results_speed() -> str:
    """vaekit against the seed's pipeline, and time to the seed's test loss."""
    rows = []
    for name in ["pairs-seed-fp32-cpu.json", "pairs-seed-bf16-cpu.json", "pairs-cpu.json"]:
        r = load(name)
        ratio = r["ratio"]
        rows.append(
            [
                f"`{r['command']}`",
                f"**{ratio['median']:.2f}x** ({ratio['min']:.2f}-{ratio['max']:.2f})",
                _num(r["vaekit_img_s"]["median"], 1),
                _num(r["reference_img_s"]["median"], 1),
                r["date"],
                f"`{r['commit']}`",
                _cpu(r),
            ]
        )
    header = [
        "command",
        "vaekit / seed pipeline, images/s",
        "vaekit img/s",
        "seed img/s",
        "date",
        "commit",
        "CPU",
    ]
    ttq = []
    for name in ["ttq-wallclock-cpu.json", "ttq-bf16-cpu.json"]:
        r = load(name)
        ttq.append(
            [
                f"`{r['command']}`",
                str(r["epoch"]),
                _num(r["test_loss"]),
                _num(r["wall_seconds"], 1),
                f"**{r['fraction_of_reference']:.3f}**",
                r["date"],
                f"`{r['commit']}`",
            ]
        )
    r = load("ttq-cpu.json")
    ttq.append(
        [
            f"`{r['command']}`",
            str(r["epoch"]),
            _num(r["found"].get("test_loss")),
            f"{_num(r['vaekit_epoch_seconds'], 1)} per epoch",
            f"**{r['time_to_quality']:.3f}**",
            r["date"],
            f"`{r['commit']}`",
        ]
    )
    header2 = [
        "command",
        "first epoch under the target",
        "test loss",
        "seconds",
        "fraction of the seed's time",
        "date",
        "commit",
    ]
    return (
        _table(header, rows)
        + "\n\nTime to the seed's 20-epoch test loss:\n\n"
        + _table(header2, ttq)
    )


def results_roofline() -> str:
    """Each preset's training step against the measured matrix-multiply peak."""
    r = load("roofline-cpu.json")
    rows = []
    for preset, p in r["presets"].items():
        t = p["threads"]
        rows.append(
            [
                f"`{preset}`",
                str(p["batch_size"]),
                _num(p["gflop_per_image"], 3),
                *(
                    f"{_num(t[n]['wall_img_s'], 0)} img/s, {t[n]['fraction_of_peak']:.0%}"
                    for n in ("1", "2")
                    if n in t
                ),
            ]
        )
    peak = r["peak"]
    head = [
        f"{n} thread(s): img/s, share of {peak[n]['fp32']['wall_gflops']:.1f} GFLOP/s"
        for n in ("1", "2")
    ]
    table = _table(["preset", "batch", "GFLOP per image", *head], rows)
    return table + "\n\n" + provenance("roofline-cpu.json", r)


def results_scaling() -> str:
    """Throughput of the mnist preset against batch and image size."""
    r = load("scaling-cpu.json")
    rows = [
        [
            row["vary"],
            str(row["batch_size"]),
            str(row["image_size"]),
            _num(row["img_s"], 0),
            _num(row["peak_rss_mib"], 0),
        ]
        for row in r["rows"]
    ]
    header = ["varied", "batch", "image size", "images/s", "peak RSS (MiB)"]
    return _table(header, rows) + "\n\n" + provenance("scaling-cpu.json", r)


def results_explorer() -> str:
    """Decode latency of the explorer, alone and under 200 concurrent clients."""
    a, c = load("explorer.json"), load("explorer-concurrent.json")
    rows = [
        [
            "one `POST /api/decode`, Python over loopback",
            _num(a["api_decode"]["median_ms"], 1),
            _num(a["api_decode"]["p95_ms"], 1),
            str(a["api_decode"]["n"]),
        ],
        [
            "the same in headless Chromium (fetch + JSON + PNG)",
            _num(a["browser_decode"]["median_ms"], 1),
            _num(a["browser_decode"]["p95_ms"], 1),
            str(a["browser_decode"]["n"]),
        ],
    ]
    cd = c["concurrent_decode"]
    conc = [
        [
            f"{cd['bursts']} bursts of {cd['clients']} clients",
            f"{cd['served']} of {cd['requests']}",
            _num(cd["median_ms"], 0),
            _num(cd["p99_ms"], 0),
        ]
    ]
    if "before" in c:
        b = c["before"]["concurrent_decode"]
        conc.append(
            [
                f"the same, {c['before']['code']}",
                f"{b['served']} of {b['requests']}",
                _num(b["median_ms"], 0),
                _num(b["p99_ms"], 0),
            ]
        )
    return "\n\n".join(
        [
            _table(["request", "median ms", "p95 ms", "requests"], rows),
            provenance("explorer.json", a),
            _table(["load", "served", "median ms", "p99 ms"], conc),
            provenance("explorer-concurrent.json", c),
        ]
    )


def results_records() -> str:
    """Every record in benchmarks/results/: its date, commit, CPU and command."""
    rows = []
    for path in sorted(RESULTS_DIR.glob("*.json")):
        r = json.loads(path.read_text())
        command = r.get("command") or r.get("cmd") or r.get("commands") or ""
        if isinstance(command, list):
            command = command[0]
        rows.append(
            [
                f"`{path.name}`",
                str(r.get("date", "")),
                f"`{r.get('commit') or ''}`",
                _cpu(r),
                f"`{command}`" if command else "",
            ]
        )
    return _table(["record", "date", "commit", "CPU", "command"], rows)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def results_main_job() -> str:
    """`make train`'s run (docs/mnist/): test loss and seconds per epoch, and its evaluation."""
    rows = _jsonl(ROOT / "docs" / "mnist" / "metrics.jsonl")
    e = json.loads((ROOT / "docs" / "mnist" / "eval.json").read_text())
    table = _table(
        ["epoch", *(str(r["epoch"]) for r in rows)],
        [
            ["test loss", *(_num(r["test_loss"]) for r in rows)],
            ["epoch seconds", *(_num(r["epoch_seconds"], 1) for r in rows)],
            ["images/s", *(_num(r["images_per_second"], 0) for r in rows)],
        ],
    )
    summary = (
        f"`vaekit evaluate` (`docs/mnist/eval.json`): test loss {_num(e['test_loss'])} = recon "
        f"{_num(e['recon'])} + KL {_num(e['kl'])} per image, ELBO {_num(e['elbo'])} nats "
        f"({_num(e['bits_per_dim'])} bits/dim), {e['active_units']} active units, linear-probe "
        f"accuracy {_num(e['probe_accuracy'], 3)}."
    )
    return table + "\n\n" + summary


def results_reference() -> str:
    """The seed's pipeline rewritten (benchmarks/reference.py): test loss per epoch."""
    r = load("reference-cpu.json")
    epochs = r["epochs"]
    table = _table(
        ["epoch", "test loss", "epoch seconds", "images/s"],
        [
            [
                str(x["epoch"]),
                _num(x["test_loss"]),
                _num(x["epoch_seconds"], 1),
                _num(x["images_per_second"], 0),
            ]
            for x in epochs
        ],
    )
    return table + "\n\n" + provenance("reference-cpu.json", r)


RESULTS: dict[str, Callable[[], str]] = {
    "main-job": results_main_job,
    "reference": results_reference,
    "nll": results_nll,
    "hvae-groups": results_hvae_groups,
    "hvae-sittings": lambda: results_sittings("results-nll-hvae-cpu.json"),
    "iaf-sittings": lambda: results_sittings("results-nll-iaf-cpu.json"),
    "vamp-iaf-sittings": lambda: results_sittings("results-nll-vamp-iaf-cpu.json"),
    "quality-final": lambda: results_quality("metrics-final-cpu.json"),
    "quality-short": lambda: results_quality("metrics-cpu.json"),
    "ood": results_ood,
    "priors": results_priors,
    "priors-vamp-iaf": lambda: results_priors("priors-vamp-iaf-cpu.json"),
    "flows": results_flows,
    "precision": lambda: results_flows("precision-vamp-iaf-cpu.json"),
    "objectives": results_objectives,
    "speed": results_speed,
    "roofline": results_roofline,
    "scaling": results_scaling,
    "explorer": results_explorer,
    "records": results_records,
}


def render(kind: str, arg: str) -> str:
    """What one marker becomes."""
    if kind == "cli":
        return render_cli()
    if kind == "api":
        return render_api()
    if kind == "family":
        return render_family(arg)
    if arg not in RESULTS:
        raise ValueError(f"unknown results table {arg!r}; known: {', '.join(RESULTS)}")
    return RESULTS[arg]()


def expand(markdown: str) -> str:
    """The page's Markdown with every marker replaced."""
    return MARKER.sub(lambda m: render(m.group(1), m.group(2)), markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs' hook)
    """MkDocs calls this for every page before rendering it."""
    return expand(markdown)
