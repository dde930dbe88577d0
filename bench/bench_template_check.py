"""Checking a template's placeholders against hostile text.

Ours: mailing.rendering.check() (what saving a template runs on the subject
and each body) over 1 MB of each adversarial shape: openings that never
close, closings without openings, a tag's "{%" with and without a "%}" at
the very end, nested braces, and a mix. Each must take time linear in the
length: before the scan was linear, 100 KB of "{{" took 6 s and a
megabyte some ten minutes.
Baseline, same run, same text: str.count("{{"), one pass in C that no check
can beat. Prints the best of a few runs per shape (the machine's other work
only adds to a run) and the ratio."""

import os
import random
import sys

from common import ROOT, repeat

SIZE = int(os.environ.get("BENCH_TEMPLATE_BYTES", str(2**20)))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
KNOWN = {"first_name", "last_name", "email", "unsubscribe_url", "city"}


def _fill(unit: str, tail: str = "") -> str:
    return (unit * (SIZE // len(unit) + 1))[: SIZE - len(tail)] + tail


def _mixed() -> str:
    rng = random.Random(5)
    pieces = ["{{", "{%", "{#", "}}", "%}", "{", "}", "{{ x", "{{ email }}", "{{ a|b }}", "\n", "text "]
    out: list[str] = []
    length = 0
    while length < SIZE:
        out.append(piece := rng.choice(pieces))
        length += len(piece)
    return "".join(out)[:SIZE]


SHAPES = {
    "{{ x N": lambda: _fill("{{"),
    "{{ x N, then }}": lambda: _fill("{{", "}}"),
    "{% x N": lambda: _fill("{%"),
    "{% x N, then %}": lambda: _fill("{%", "%}"),
    "{ x N": lambda: _fill("{"),
    "lone { x N": lambda: _fill("{ "),
    "{{{{ nested": lambda: _fill("{{{{ {{{{ }}"),
    "unterminated {{ x": lambda: _fill("{{ x"),
    "{{ + 1 MB, no }}": lambda: "{{ " + _fill("x")[3:],
    "}} x N": lambda: _fill("}}"),
    "mixed": _mixed,
    "valid {{ email }}": lambda: _fill("Hi {{ email }}! "),
}


def setup() -> None:
    """Django's apps, no database: the check reads nothing."""
    os.environ.update(DJANGO_SETTINGS_MODULE="config.settings", DEBUG="1", ENV_FILE="")
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 50)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def main() -> None:
    setup()
    from mailing.rendering import check

    print(f"{SIZE / 2**20:.1f} MB of each shape, best of {RUNS} runs")
    print(f"{'shape':<20} {'check()':>10} {'problems':>10} {'str.count':>10} {'ratio':>8}")
    worst = 0.0
    for name, make in SHAPES.items():
        text = make()
        assert len(text) == SIZE, (name, len(text))
        errors = check(text, known=KNOWN)
        ours = min(repeat(lambda text=text: check(text, known=KNOWN), RUNS))
        base = min(repeat(lambda text=text: text.count("{{"), RUNS))
        worst = max(worst, ours)
        problems = len(errors) if len(errors) <= 10 else 10 + int(errors[-1].split()[2])
        print(f"{name:<20} {ours * 1000:8.0f} ms {problems:>10,} {base * 1000:7.2f} ms {ours / base:8.0f}")
    print(f"worst: {worst * 1000:.0f} ms per MB")


if __name__ == "__main__":
    sys.exit(main())
