"""The ``cxr-dash`` command: one entry point for the package's command-line tools.

    cxr-dash --help                          # the tools, one line each
    cxr-dash train --region heart            # = python -m cxr_dash.train --region heart
    python -m cxr_dash evaluate --models weights

A subcommand is a module of the package that has a ``main(argv)`` and runs it
when started with ``python -m`` (``train``, ``evaluate``, ``tune``, ``position``,
``recalibrate``, ``pack``, ...); every argument after the subcommand's name goes
to that ``main`` unchanged, so ``cxr-dash train --help`` is the train tool's
own help. The tools are found by reading the package's sources, and each
one-line summary is the start of its module's docstring: a new tool appears
here without being listed, and ``--help`` imports nothing heavy.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import re
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def commands() -> dict[str, tuple[str, str]]:
    """{subcommand: (module, one-line summary)}, by name; a module ``quality_fit`` is the
    subcommand ``quality-fit``."""
    found = {}
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if _is_tool(tree):
            found[path.stem.replace("_", "-")] = (f"cxr_dash.{path.stem}", _summary(tree))
    return found


def _is_tool(tree: ast.Module) -> bool:
    """A top-level ``main`` that takes arguments, and an ``if __name__ == "__main__":``."""
    has_main = any(isinstance(node, ast.FunctionDef) and node.name == "main" and node.args.args
                   for node in tree.body)
    runs_main = any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)
    return has_main and runs_main


def _summary(tree: ast.Module) -> str:
    """The docstring's first paragraph, without the ``python -m ...`` usage that often
    follows a colon: 'Train per-region U-Nets'."""
    first = " ".join((ast.get_docstring(tree) or "").split("\n\n")[0].split())
    return re.split(r":\s*``", first)[0].rstrip(" .:")


def build_parser(table: dict[str, tuple[str, str]], prog: str = "cxr-dash") -> argparse.ArgumentParser:
    """The top-level parser; its ``--help`` lists the commands, one line each."""
    from . import __version__

    width = max(map(len, table), default=0) + 2
    listing = "\n".join(f"  {name:<{width}}{summary}" for name, (_, summary) in table.items())
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Chest-radiograph segmentation: train, evaluate and explain per-region "
                    "U-Nets.\nThe dashboard itself: streamlit run app.py.",
        epilog=f"commands:\n{listing}\n\n'{prog} COMMAND --help' shows a command's own options.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help="one of the commands below")
    for name in table:
        sub.add_parser(name, add_help=False)
    return parser


def main(argv=None, prog: str = "cxr-dash") -> int:
    """``cxr-dash COMMAND ARGS...``: runs the command's ``main(ARGS)``, returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    table = commands()
    parser = build_parser(table, prog)
    if not argv:
        parser.print_help()
        return 2
    if not argv[0].startswith("-"):
        argv[0] = argv[0].replace("_", "-")     # the module's own spelling works too
    name = parser.parse_args(argv[:1]).command  # exits on --help, --version or an unknown name
    module = importlib.import_module(table[name][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    raise SystemExit(main(prog="python -m cxr_dash"))
