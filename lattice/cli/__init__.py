"""The ``lattice`` command line: one argparse subcommand per entry of ``SUBCOMMANDS``.

Each subcommand lives in a module of this package (``lattice.cli.align``,
``lattice.cli.demo``, ``lattice.cli.bench``, ``lattice.cli.speech_bench``) with two
functions:

* ``add_arguments(parser)`` declares its options on an argparse sub-parser;
* ``main(args) -> int`` runs it on the parsed arguments and returns the exit status.

Such a module holds only the command's glue: its options, the reading of untrusted
files, the turning of errors into one-line messages. The work is done by the library
(``lattice.align``, ``lattice.demo``, ``lattice.bench``), which imports nothing of
this package. Adding a command is one line in ``SUBCOMMANDS`` (name, module, one-line
help) plus that module. Modules are imported when the parser is built, so they must
not import heavy optional dependencies (torch, matplotlib) at module level.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: name -> (module defining add_arguments and main, one-line help)
SUBCOMMANDS = {
    "demo": ("lattice.cli.demo", "train a small BiLSTM with lattice's CTC loss on synthetic "
             "handwritten digit strings, report CER, plot the alignment"),
    "align": ("lattice.cli.align", "forced alignment: where each transcript symbol sits in "
              "the frames of an emissions .npy, as a CSV or JSON table"),
    "bench": ("lattice.cli.bench", "time lattice's CTC loss against torch's (and optax's) "
              "on this machine"),
    "speech-bench": ("lattice.cli.speech_bench", "word-boundary errors of each topology's "
                     "forced alignments on synthetic speech with true word times "
                     "(espeak-ng)"),
}


def _description(module):
    doc = (module.__doc__ or "").strip()
    return doc.split("\n\n")[0].replace("\n", " ").replace("``", "")


def build_parser():
    """The ``lattice`` argument parser with every subcommand of ``SUBCOMMANDS``.

    Returns
    -------
    argparse.ArgumentParser

    Examples
    --------
    >>> from lattice.cli import build_parser
    >>> args = build_parser().parse_args(["demo", "--epochs", "2"])
    >>> args.command, args.epochs
    ('demo', 2)
    """
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="lattice",
        description="lattice: forward, backward and best path over alignment graphs.",
    )
    parser.add_argument("--version", action="version", version=f"lattice {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=_description(module),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv=None):
    """Entry point of the ``lattice`` console script and ``python -m lattice``.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status (2 when no command is given).

    Examples
    --------
    >>> from lattice.cli import main
    >>> main(["--version"])
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args._main(args) or 0)
