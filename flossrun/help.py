"""``flossrun --help``: every key with its default and its one-line doc (the comment next to the
field in the config dataclasses of flossrun/config.py, the models, tasks and analyses)."""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap

WIDTH, INDENT = 100, 34  # characters per line, column of the docs
FIELD = re.compile(r"^\s+(\w+)\s*:")
COMMENT = re.compile(r"#\s*(?!fmt:)(.*)$")

USAGE = """\
usage: flossrun [KEY=VALUE ...] [GROUP=CHOICE ...] [-m] [--cfg job] [--hydra-help]

Trains RNN ensembles with gradient flossing (docs/design.md). Every key below can be set on the
command line (`floss.k=32`); `-m` sweeps comma-separated values (`-m seed=0,1,2`); a typo is
refused in one line. `flossrun --cfg job` prints the composed config, `--hydra-help` Hydra's own
options. Examples:
  flossrun                                        the reference delayed-XOR run
  flossrun task=delayed_copy task.delay=40 floss=none
  flossrun -m experiment=preflossing scale=quick  a preset's own sweep (configs/experiment/)
"""


def field_docs(cls: type) -> dict[str, str]:
    """``{field: comment}`` of a dataclass and its dataclass bases (a subclass's comment wins)."""
    docs: dict[str, str] = {}
    for c in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(c):
            continue
        try:
            lines = inspect.getsource(c).splitlines()
        except (OSError, TypeError):
            continue
        current, seen = None, set()
        for line in lines[1:]:
            m = FIELD.match(line)
            if m and line.startswith("    ") and not line.startswith("     "):
                current = m.group(1)
            if line.lstrip().startswith(("def ", "@")):
                current = None
            found = COMMENT.search(line)
            if current and found and current not in seen:
                docs[current] = found.group(1).strip()
                seen.add(current)
    return docs


def default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default) if isinstance(f.default, str) else str(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return str(f.default_factory())  # type: ignore[misc]
    return ""


def section(title: str, cls: type, prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    """``title`` then one line per field: ``prefix.key = default   doc``."""
    docs = field_docs(cls)
    out = [title]
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        key = f"{prefix}{f.name}"
        head = f"  {key} = {default_text(f)}"
        doc = textwrap.wrap(docs.get(f.name, ""), WIDTH - INDENT) or [""]
        if len(head) >= INDENT:
            out.append(head)
        else:
            out.append(f"{head:<{INDENT}}{doc.pop(0)}")
        out += [f"{'':<{INDENT}}{d}" for d in doc]
    return out


def help_text() -> str:
    """The text ``flossrun --help`` prints."""
    from flossrun.analyses import ANALYSES
    from flossrun.config import CONFIG_DIR, DiagConfig, FlossConfig, RunConfig, TrainConfig
    from flossrun.models import MODELS
    from flossrun.tasks import TASKS

    lines = USAGE.splitlines()
    groups = ("task", "model", "analysis", "floss", "train", "diag", "report")
    lines += ["", *section("top-level keys:", RunConfig, "", skip=groups)]
    lines += ["", *section("floss.* (floss=none|pre|pre_during):", FlossConfig, "floss.")]
    lines += ["", *section("train.*:", TrainConfig, "train.")]
    lines += ["", *section("diag.* (diagnostic spectra):", DiagConfig, "diag.")]
    for reg in (TASKS, MODELS, ANALYSES):
        for name, spec in reg.items():
            title, prefix = f"{reg.group}={name}:", f"{reg.group}."
            lines += ["", *section(title, spec.config, prefix, skip=("name",))]
    presets = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
    tail = (
        f"experiment=<name> (configs/experiment/): {', '.join(presets)}; variant=<condition> "
        "picks one condition of a preset. report.* (set by a preset; what flossrun-report and "
        "make figures read, checked before a job computes, docs/design.md §8): order, figures, "
        "summary, grid, condition, x, claim (number, text, compare, pairs, ranks)"
    )
    lines += [
        "",
        "presets:",
        *textwrap.wrap(tail, WIDTH, initial_indent="  ", subsequent_indent="  "),
    ]
    return "\n".join(lines)
