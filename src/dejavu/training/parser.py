"""The command line's parser: LightningCLI's, with errors a person can read.

jsonargparse prints the whole usage (about 90 lines) and then the error on the last line. Here the error
comes first, in a few lines: the option it is about, what it takes, a close match for a mistyped
option, and where to look next. Abbreviated options (``--trainer.max_epoch``) are refused: an
abbreviation that matches one option today matches two once an option is added.
"""

from __future__ import annotations

import difflib
import re
import sys
from typing import Any, NoReturn

from lightning.pytorch.cli import LightningArgumentParser

__all__ = ["DejaVuArgumentParser", "short_error"]


class DejaVuArgumentParser(LightningArgumentParser):
    """:class:`~lightning.pytorch.cli.LightningArgumentParser` that refuses abbreviations and reports
    an error as :func:`short_error` writes it (exit status 2, as argparse's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # a caller that parses for itself wants the exception
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        command = " ".join(["dejavu", *parser.prog.replace(" [options]", "").split()[1:]])
        sys.stderr.write(short_error(message, command, parser.format_usage()) + "\n")
        self.exit(2)


def short_error(message: str, command: str, usage: str) -> str:
    """``message`` of jsonargparse as a few lines that start with the error.

    Example:
        >>> print(short_error("unrecognized arguments: --data.batch_sise 4", "dejavu fit",
        ...                   "usage: fit [--data.batch_size BATCH_SIZE] [--data.size SIZE]"))
        dejavu fit: unknown option --data.batch_sise; did you mean --data.batch_size?
        (`dejavu fit --help` lists every option)
    """
    options = sorted(set(re.findall(r"--[\w.]+", usage)))
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    first = lines[0] if lines else "bad arguments"
    unknown = re.match(r"unrecognized arguments: (\S+)", first) or re.search(r"does not accept option '([\w.]+)'",
                                                                             first)
    key = re.match(r'Parser key "([\w.]+)":?\s*(.*)', first)
    if unknown:
        name = "--" + unknown.group(1).lstrip("-")
        close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
        prefix = [o for o in options if o.startswith(name) and o != name]
        hint = (f"; did you mean {close[0]}?" if close else
                f"; options are not abbreviated: {', '.join(prefix[:3])}?" if prefix else "")
        text = f"{command}: unknown option {name}{hint}"
    elif key and key.group(1) == "config":
        text = (f"{command}: --config: {key.group(2) or ' '.join(lines[1:2])}; `dejavu configs` lists the shipped "
                "ones, which --config takes by name (e.g. --config synthetic/segmentation_dejavu.yaml)")
    elif key:
        text = f"{command}: --{key.group(1)}: {_value_error(key.group(1), key.group(2), lines[1:])}"
    else:
        text = f"{command}: {' '.join(lines[:4])}"
    return f"{text}\n(`{command} --help` lists every option)"


def _value_error(option: str, rest: str, details: list[str]) -> str:
    """What jsonargparse says of a value in one or two sentences: what the option takes, what it got,
    and how a list is written."""
    text = " ".join([rest, *details])
    given = re.search(r"(?:Given value|Got value):\s*(.*?)(?:\s+-\s|$)", text)
    value = given.group(1).strip() if given else None
    subtypes = re.search(r"Subtypes:\s*\[(.*?)\]\s*(?:Errors|$)", text)
    expected = re.findall(r"Expected a <class '(\w+)'>", text)
    takes = (subtypes.group(1) if subtypes else " or ".join(dict.fromkeys(expected))) or None
    takes = re.sub(r"<class '(\w+)'>", r"\1", takes).replace("NoneType", "null") if takes else None
    if value is None or takes is None:
        return " ".join([rest, *details[:3]]).strip()
    takes = re.sub(r", null$", " or null", takes)
    out = f"{value!r} is not a valid value; it takes {takes}"
    if re.search(r"tuple|list|Sequence", takes):
        items = [v for v in re.split(r"[,\s\[\]()]+", value) if v]
        out += f'. Write a list as YAML, in quotes: --{option} "[{", ".join(items) if len(items) > 1 else "a, b"}]"'
    elif re.search(r"dict", takes):
        out += f'. Write a mapping as YAML, in quotes, a space after each colon: --{option} "{{key: value, ...}}"'
    return out
