"""The command line: the only place that reads argv. One module per command, each with
add_arguments(parser) and run(args) -> exit status, calling the command's function of
vaekit.api and printing or writing its record; every config field is a --flag of train."""

from __future__ import annotations

import sys

from .. import outputs
from .._version import __version__
from ..errors import VaekitError
from . import (
    encode,
    evaluate,
    explore,
    export,
    interpolate,
    metrics,
    prior,
    reconstruct,
    sample,
    score,
    train,
    traverse,
)
from .args import Parser

EPILOG = "Run 'vaekit COMMAND --help' for a command's options."

# the commands, in the order of `vaekit --help`: name -> its module
COMMANDS = {
    "train": train,
    "sample": sample,
    "reconstruct": reconstruct,
    "traverse": traverse,
    "interpolate": interpolate,
    "evaluate": evaluate,
    "metrics": metrics,
    "encode": encode,
    "score": score,
    "explore": explore,
    "export": export,
    "prior": prior,
}


def build_parser() -> Parser:
    """The parser of every command: `vaekit COMMAND ...`; args.run is the command's run."""
    root = Parser(prog="vaekit", description="Variational autoencoders in PyTorch.", epilog=EPILOG)
    root.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = root.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.HELP)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return root


def main(argv: list[str] | None = None) -> int:
    """Run `vaekit ARGV`: its exit status; errors are one line on stderr (status 2)."""
    args = build_parser().parse_args(argv)  # --help, --version and bad flags end here
    try:
        if args.command != "train" and getattr(args, "out", None) is not None:
            outputs.prepare(args.out)  # its folder made and writable before the work, not after
        return args.run(args)
    except OSError as e:  # a full disk, a file that cannot be written or read (OutputError)
        print(f"vaekit {args.command}: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except (VaekitError, ValueError, ImportError) as e:  # VaekitError: vaekit.errors
        print(f"vaekit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vaekit {args.command}: interrupted", file=sys.stderr)
        return 130


def os_error_line(e: OSError) -> str:
    """An OSError in one line: the file and the reason (OutputError's own words)."""
    if isinstance(e, outputs.OutputError) or not e.filename:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"{e.filename}: {e.strerror or e}"
