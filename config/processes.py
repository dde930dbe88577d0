"""The product's processes as the Procfile starts them, for the tests and the
benchmarks that must run them exactly so (the dispatch worker's pool, its
database sessions): the command of one Procfile entry as an argument list
and the environment variables it sets, with `${NAME:-default}` expanded
from the given environment."""

import os
import re
import shlex
import sys
from pathlib import Path

PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"
VARIABLE = re.compile(r"\$\{(\w+):-([^}]*)\}|\$(\w+)")


def procfile_command(kind: str, env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """(argv, variables) of the Procfile's `kind:` line. `.venv/bin/x`
    becomes this interpreter running module x, so the command runs from any
    virtualenv."""
    env = dict(os.environ if env is None else env)
    line = next(line.split(":", 1)[1] for line in PROCFILE.read_text().splitlines() if line.startswith(f"{kind}:"))
    expanded = VARIABLE.sub(lambda m: env.get(m[1] or m[3], m[2] or ""), line)
    words = shlex.split(expanded)
    variables: dict[str, str] = {}
    if words[0] == "env":
        words.pop(0)
        while "=" in words[0]:
            name, value = words.pop(0).split("=", 1)
            variables[name] = value
    program = words.pop(0)
    if program.startswith(".venv/bin/"):
        program = program.removeprefix(".venv/bin/")
        return [sys.executable, "-m", program, *words], variables
    return [program, *words], variables


def with_option(argv: list[str], option: str, value: str) -> list[str]:
    """argv with `option`'s value replaced (or the option added)."""
    argv = list(argv)
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    return argv
