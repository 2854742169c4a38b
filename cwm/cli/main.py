"""``cwm``: the command-line entry point.

Each subcommand lives in its own module of :mod:`cwm.cli` with ``register(subparsers)`` (which
adds its parser and sets ``run``) and ``run(args) -> int``. Exit codes: 0 success, 2 user error
(a :class:`cwm.errors.CWMError` or a bad command line, reported on one stderr line without a
traceback), 130 interrupted (Ctrl-C) and 143 terminated (SIGTERM), after removing the files the
run had written; anything else is a bug and keeps its traceback. SIGKILL cannot be caught: it
leaves the files already finished (each complete) and at most one hidden temporary file, never a
half-written file under a final name.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence

from cwm.cli.common import CWMArgumentParser, UsageError, unknown_options
from cwm.errors import CWMError, OutputExistsError

#: Subcommand modules, in the order ``cwm --help`` lists them.
COMMANDS = ("flow", "occlusion", "segment", "depth", "track", "predict", "counterfactual", "pretrain", "evaluate",
            "weights", "env")

EXAMPLES = """\
examples:
  cwm flow demos/assets/sample.mp4                 # colour-coded flow video + raw flow
  cwm flow frame0.png frame1.png -o out/           # one pair
  cwm counterfactual demos/assets/still.png --move 45,86,12,0 --static 10,10
  cwm weights list
  cwm env                                          # versions and devices, for bug reports
run `cwm COMMAND --help` for each command's options and examples."""
#: Library warnings that say nothing to a CLI user (torch internals hit by forward-mode autograd
#: and vmap); everything else is shown.
QUIET_WARNINGS = (r"`torch\.jit\.script` is deprecated",
                  r"There is a performance drop because we have not yet implemented the batching rule")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    from cwm import __version__

    parser = CWMArgumentParser(
        prog="cwm", allow_abbrev=False, epilog=EXAMPLES,
        description="Counterfactual World Models: predictions, counterfactuals, flow, occlusion, "
                    "segments and depth from a two-frame masked autoencoder.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cwm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CWMArgumentParser)
    subparsers = {}
    for name in COMMANDS:
        module = importlib.import_module(f"cwm.cli.{name}")
        p = module.register(sub)
        p.set_defaults(run=module.run)
        subparsers[p.prog.split(" ", 1)[1]] = p
    return parser, subparsers


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings():
        for pattern in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        try:
            with _sigterm_as_interrupt():
                return _run(argv)
        except SystemExit as e:  # argparse: --help, --version and usage errors
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        except (CWMError, UsageError) as e:
            print(f"cwm: error: {_cli_message(e)}", file=sys.stderr)
            return 2
        except Terminated:
            print("\ncwm: terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
        except KeyboardInterrupt:
            print("\ncwm: interrupted", file=sys.stderr)
            return 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up (removing partial outputs) runs."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` for the ``with`` body, unless someone (the caller's
    program) already handles SIGTERM, or this is not the main thread (only it gets signals)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run(argv: list[str]) -> int:
    parser, subparsers = build_parser()
    args, extras = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    sub = subparsers[args.command]
    if getattr(args, "passthrough", False):
        args.rest = extras
    elif extras:
        sub.error(unknown_options(_innermost(sub, args), extras))
    return int(args.run(args) or 0)


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """For nested subcommands (``cwm weights download``), the parser the options belong to."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(args, action.dest, None)
            if name in action.choices:
                return _innermost(action.choices[name], args)
    return parser


def _cli_message(e: BaseException) -> str:
    """The error's one line, with library wording mapped to the command line's (the library
    names ``overwrite=True``, every cwm command that writes files has ``--overwrite``)."""
    if isinstance(e, OutputExistsError) and e.path is not None:
        return _one_line(OutputExistsError(f"output '{e.path}' already exists; pass --overwrite to replace it"))
    return _one_line(e)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
