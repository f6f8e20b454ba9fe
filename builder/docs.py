"""The helper's man page and bash completion, generated from its own parser.

Run by stage() in a fresh interpreter with the staged helper on sys.path:
python -m builder.docs MAN_PAGE COMPLETION
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import shtab

# The functions cli.USERS names: accounts for "user passwd|remove".
PREAMBLE = """\
_pypi_appliance_users() {
  compgen -W "$(pypi-appliance user list --names 2>/dev/null)" -- "$1"
}
"""


def roff(text: str) -> str:
    """Plain text as roff: backslashes and hyphens escaped, no line starting a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.M)


def prose(text: str) -> str:
    return roff(" ".join(text.split()))


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, parser) for every command that runs something."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from leaves(child, (*path, name))


def options(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = f" {action.metavar or action.dest.upper()}" if action.nargs != 0 else ""
            head = ".B " + roff(", ".join(action.option_strings) + metavar)
        else:
            head = ".I " + roff(str(action.metavar or action.dest))
        lines += [".TP", head, prose(action.help or "")]
    return lines


def man_page(parser: argparse.ArgumentParser) -> str:
    prog = parser.prog
    out = [
        f'.TH {prog.upper()} 8 "" "{prog}" "System Administration"',
        ".SH NAME",
        f"{prog} \\- {prose((parser.description or '')[:1].lower() + (parser.description or '')[1:])}",
        ".SH SYNOPSIS",
        ".nf",
    ]
    commands = list(leaves(parser))
    for _words, child in commands:
        usage = " ".join(child.format_usage().split()[1:]).replace(" [-h]", "")
        out.append(roff(usage))
    out += [".fi", ".SH COMMANDS"]
    for words, child in commands:
        out += [".TP", ".B " + roff(" ".join(words)), prose(child.description or "")]
        opts = options(child)
        if opts:
            out += [".RS", *opts, ".RE"]
    # The epilog: a paragraph, then "files:" and "see also:" sections.
    for block in (parser.epilog or "").split("\n\n"):
        title, _, rest = block.partition(":\n")
        if title == "files":
            out.append(".SH FILES")
            for entry in re.split(r"\n(?=  \S)", rest):
                path, _, text = entry.strip().partition("\n")
                out += [".TP", ".I " + roff(path), prose(text)]
        elif block.startswith("see also:"):
            out += [".SH SEE ALSO", roff(block.partition(":")[2].strip())]
        else:
            out += [".SH DESCRIPTION", prose(block)]
    return "\n".join(out) + "\n"


def main(man: str, completion: str) -> None:
    from pypi_appliance.admin.cli import parser

    p = parser()
    Path(man).write_text(man_page(p))
    Path(completion).write_text(shtab.complete(p, shell="bash", preamble=PREAMBLE))


if __name__ == "__main__":
    main(*sys.argv[1:])
