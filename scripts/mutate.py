"""Mutation testing (`make mutate`, docs/testing.md §2): cosmic-ray over the code whose mistakes cost most.

Each module below is mutated alone, and only inside the functions and classes it names (their line ranges
are read with `ast`, so the table survives edits); each mutant runs only that module's fast tests (unit and
collector layers). A mutant is killed when its tests fail or time out, and survives when they pass.

cosmic-ray writes each mutant over the module in place and restores it afterwards; this script also keeps
the original and puts it back however the run ends, and refuses a module outside this checkout (a checkout's
`callboard/` holds relative symlinks, so the mutated file is the one the tests import).

Cost: one pytest process per mutant (1-2 s for unit tests, 2-4 s with a Redis and a Valkey to start), about
900 mutants in all: ~35 minutes on one core. Work files go to `.mutate/<module>/` (git-ignored).

    python scripts/mutate.py [MODULE ...]      # all modules, or those named
    python scripts/mutate.py --list            # the modules, their targets and tests
"""

from __future__ import annotations

import argparse
import ast
import json
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from cosmic_ray.work_db import use_db
from cosmic_ray.work_item import WorkerOutcome, WorkResult

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutate"


@dataclass(frozen=True, slots=True)
class Module:
    #: The name on the command line and in the report.
    name: str
    #: The file mutated, relative to the checkout.
    path: str
    #: Qualified names (`Class.method`, `function`, `Class`) whose lines are mutated; () = every
    #: top-level function and class (module-level constants are left alone).
    only: tuple[str, ...]
    #: The tests run against each mutant: the narrowest fast selection that covers `only`.
    tests: tuple[str, ...]


#: Unit tests that live with the hostile layer's HTTP tests of the same rules (they need no server).
CROSS_SITE = tuple(
    f"tests/hostile/test_host.py::{name}"
    for name in (
        "test_cross_site_accepts_its_own_origin",
        "test_cross_site_refuses_other_origins_and_ones_that_only_equal_the_host",
        "test_trusted_origins_are_exact",
    )
)

MODULES = (
    Module(
        "fingerprints",
        "collectors/failures.py",
        (),
        ("tests/unit/test_failures.py", "tests/collectors/test_failures.py"),
    ),
    Module(
        "dramatiq-snapshot",
        "collectors/dramatiq/snapshot.py",
        ("DramatiqCollector._parse", "DramatiqCollector._queue_stats", "DramatiqCollector._worker"),
        ("tests/collectors/test_dramatiq_snapshot.py",),
    ),
    Module(
        "arq-snapshot",
        "collectors/arq/snapshot.py",
        ("ArqCollector._parse", "ArqCollector._health_worker"),
        ("tests/collectors/test_arq.py",),
    ),
    Module(
        "access",
        "dashboard/access.py",
        (),
        ("tests/unit/test_access.py", "tests/unit/test_settings.py", *CROSS_SITE),
    ),
    Module(
        "hosts",
        "dashboard/hosts.py",
        (),
        (
            "tests/unit/test_hosts.py",
            "tests/unit/test_settings.py",
            *CROSS_SITE,
            "tests/hostile/test_host.py::test_allowed_hosts_from_config_environment_and_flags",
            "tests/hostile/test_host.py::test_compose_serves_the_host_prometheus_scrapes",
        ),
    ),
    Module(
        "dramatiq-selection",
        "collectors/dramatiq/controls.py",
        ("_Selection", "select_all"),
        ("tests/collectors/test_dramatiq_controls.py",),
    ),
    Module(
        "arq-selection",
        "collectors/arq/controls.py",
        ("ScoreRange", "IdList", "select_all"),
        ("tests/collectors/test_arq_controls.py",),
    ),
    Module(
        "urls",
        "dashboard/urls.py",
        (),
        (
            "tests/unit/test_urls.py",
            "tests/unit/test_templating.py",
            *(
                f"tests/hostile/test_urls.py::{name}"
                for name in (
                    "test_segment_round_trips_and_is_one_safe_segment",
                    "test_segment_escapes_what_ends_or_changes_a_path",
                    "test_path_segments_read_the_raw_path_and_skip_root_path",
                    "test_builders_make_one_segment_per_name",
                )
            ),
        ),
    ),
)

#: Binary operators are replaced only by the slip a person makes (`+` for `-`, `|` for `&`), not by
#: all eleven others: on these operands (numbers, strings, sets) the rest raise TypeError at once, so
#: they measure which lines run, not what the tests check, and would triple the run.
BINARY_SLIPS = {
    "Add": ("Sub",),
    "Sub": ("Add",),
    "Mul": ("Div",),
    "Div": ("Mul", "FloorDiv"),
    "FloorDiv": ("Div",),
    "Mod": ("FloorDiv",),
    "Pow": ("Mul",),
    "BitOr": ("BitAnd",),
    "BitAnd": ("BitOr",),
    "BitXor": ("BitOr",),
    "LShift": ("RShift",),
    "RShift": ("LShift",),
}
#: `==` -> `is` and the like: on the ints and interned strings compared here, most are the same
#: program (equivalent mutants), the rest only a SyntaxWarning.
IDENTITY_SWAPS = r"core/ReplaceComparisonOperator_(Eq|NotEq|Lt|LtE|Gt|GtE)_(Is|IsNot)$"
#: cosmic-ray's operators that need arguments (which variable to replace): not used.
UNUSED = ("core/VariableReplacer", "core/VariableInserter")


def line_ranges(path: Path, only: tuple[str, ...]) -> list[tuple[int, int]]:
    """Line ranges (first decorator to last line) of the named definitions."""
    found: dict[str, tuple[int, int]] = {}

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                found[prefix + node.name] = (first, node.end_lineno or node.lineno)
                if isinstance(node, ast.ClassDef):
                    walk(node.body, f"{prefix}{node.name}.")

    walk(ast.parse(path.read_text()).body, "")
    names = only or tuple(n for n in found if "." not in n)
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"{path}: no definition named {', '.join(missing)} (update MODULES)")
    return sorted(found[n] for n in names)


Position = tuple[int, int]


def type_spans(path: Path) -> list[tuple[Position, Position]]:
    """Where code is only typing: signatures (less their defaults) and annotations. A mutant there
    (`str | None` -> `str & None`, `*,` -> `/,`) changes no behaviour the tests could see: annotations
    are never evaluated (`from __future__ import annotations`), and mypy checks signatures."""
    spans: list[tuple[Position, Position]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            cut = [(node.lineno, node.col_offset)]
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if default is not None:
                    cut += [
                        (default.lineno, default.col_offset),
                        (default.end_lineno or 0, default.end_col_offset or 0),
                    ]
            cut.append((node.body[0].lineno, node.body[0].col_offset))
            spans += [(cut[i], cut[i + 1]) for i in range(0, len(cut), 2)]
        elif isinstance(node, ast.AnnAssign):
            a = node.annotation
            spans.append(((a.lineno, a.col_offset), (a.end_lineno or 0, a.end_col_offset or 0)))
    return spans


def skip_typing(session: Path, path: Path) -> None:
    """Mark the mutants inside `type_spans` as skipped in a cosmic-ray session."""
    spans = type_spans(path)
    with use_db(str(session)) as db:
        skipped = [
            item.job_id
            for item in db.pending_work_items
            if any(a <= tuple(m.start_pos) < b for m in item.mutations for a, b in spans)
        ]
        if skipped:
            db.set_multiple_results(
                skipped, WorkResult(output="typing only", worker_outcome=WorkerOutcome.SKIPPED)
            )


def excluded_operators(cosmic_ray: Path) -> list[str]:
    names = subprocess.run([cosmic_ray, "operators"], check=True, capture_output=True, text=True).stdout
    out = [IDENTITY_SWAPS, *(f"{u}$" for u in UNUSED)]
    for name in names.split():
        if name.startswith("core/ReplaceBinaryOperator_"):
            source, target = name.removeprefix("core/ReplaceBinaryOperator_").split("_")
            if target not in BINARY_SLIPS.get(source, ()):
                out.append(f"{name}$")
    return out


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(
    module: Module, config: Path, test_command: str, timeout: float, excluded: list[str]
) -> None:
    ranges = [f"{a}-{b}" for a, b in line_ranges(ROOT / module.path, module.only)]
    config.write_text(
        "\n".join(
            [
                "[cosmic-ray]",
                f"module-path = {toml_string(module.path)}",
                f"timeout = {timeout:.1f}",
                "excluded-modules = []",
                f"test-command = {toml_string(test_command)}",
                "[cosmic-ray.distributor]",
                'name = "local"',
                "[cosmic-ray.filters.operators-filter]",
                f"exclude-operators = [{', '.join(toml_string(e) for e in excluded)}]",
                "[cosmic-ray.filters.line-filter.lines]",
                f"{toml_string(module.path)} = [{', '.join(toml_string(r) for r in ranges)}]",
                "",
            ]
        )
    )


@dataclass(frozen=True, slots=True)
class Survivor:
    line: int
    operator: str
    definition: str
    change: str


@dataclass(frozen=True, slots=True)
class Score:
    module: Module
    killed: int
    survivors: tuple[Survivor, ...]
    #: Mutants cosmic-ray could not run (an exception in its worker): neither killed nor survived.
    errors: int
    timeouts: int

    @property
    def total(self) -> int:
        return self.killed + len(self.survivors)

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 100.0


def changed_lines(diff: str) -> str:
    lines = diff.splitlines()
    old = [line[1:].strip() for line in lines if line.startswith("-") and not line.startswith("---")]
    new = [line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++")]
    return f"{' / '.join(old)}  ->  {' / '.join(new)}"


def read_score(module: Module, cosmic_ray: Path, session: Path) -> Score:
    dump = subprocess.run([cosmic_ray, "dump", session], check=True, capture_output=True, text=True).stdout
    killed = errors = timeouts = 0
    survivors: list[Survivor] = []
    for row in dump.splitlines():
        item: dict[str, Any]
        result: dict[str, Any] | None
        item, result = json.loads(row)
        if result is None or result["worker_outcome"] in ("skipped", "no-test"):
            continue
        if result["worker_outcome"] != "normal":
            errors += 1
        elif result["test_outcome"] == "survived":
            mutation = item["mutations"][0]
            survivors.append(
                Survivor(
                    line=mutation["start_pos"][0],
                    operator=mutation["operator_name"].removeprefix("core/"),
                    definition=mutation.get("definition_name") or "?",
                    change=changed_lines(result.get("diff") or ""),
                )
            )
        else:
            killed += 1
            timeouts += result.get("output") == "timeout"
    survivors.sort(key=lambda s: (s.line, s.operator))
    return Score(module, killed, tuple(survivors), errors, timeouts)


def run_module(module: Module, bin_dir: Path) -> Score:
    """Mutate one module (restored however this ends) and score its tests against the mutants."""
    source = ROOT / module.path
    if not source.resolve().is_relative_to(ROOT):
        raise SystemExit(f"{source} resolves outside {ROOT}: refusing to mutate it")
    original = source.read_bytes()
    work = WORK / module.name
    work.mkdir(parents=True, exist_ok=True)
    config, session = work / "cosmic-ray.toml", work / "session.sqlite"
    cosmic_ray = bin_dir / "cosmic-ray"
    # -x: a mutant is killed by its first failure. No cache (tests run concurrently with other work),
    # and no schemathesis plugin (1.3 s of imports per run, used only by tests/hostile/).
    pytest = [str(bin_dir / "python"), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    test_command = shlex.join([*pytest, "-p", "no:schemathesis", *module.tests])
    started = time.monotonic()
    baseline = subprocess.run(shlex.split(test_command), cwd=ROOT, capture_output=True, text=True)
    if baseline.returncode != 0:
        raise SystemExit(f"{module.name}: the tests fail without a mutant:\n{baseline.stdout[-3000:]}")
    # A mutant that loops is killed by the timeout: generous, as the machine may be busy.
    timeout = max(20.0, 5 * (time.monotonic() - started))
    write_config(module, config, test_command, timeout, excluded_operators(cosmic_ray))
    try:
        filters: list[list[str | Path]] = [
            [cosmic_ray, "init", "--force", config, session],
            [bin_dir / "cr-filter-operators", session, config],
            [bin_dir / "cr-filter-lines", session, "--config", config],
        ]
        for command in filters:
            subprocess.run(command, cwd=ROOT, check=True)
        skip_typing(session, source)
        subprocess.run([cosmic_ray, "exec", config, session], cwd=ROOT, check=True)
    finally:
        if source.read_bytes() != original:
            source.write_bytes(original)
            print(f"{module.path}: restored the original", file=sys.stderr)
    return read_score(module, cosmic_ray, session)


def report(score: Score) -> str:
    m = score.module
    lines = [
        f"{m.name} ({m.path}): killed {score.killed}/{score.total} = {score.percent:.1f}%"
        + (f", {score.timeouts} by timeout" if score.timeouts else "")
        + (f"; {score.errors} mutants could not run" if score.errors else "")
    ]
    lines += [f"  survived L{s.line} {s.definition} {s.operator}: {s.change}" for s in score.survivors]
    return "\n".join(lines)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so that `finally` restores the module on SIGTERM too


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("modules", nargs="*", help="module names (default: all)")
    parser.add_argument("--list", action="store_true", help="show the modules and exit")
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MODULES}
    unknown = [n for n in args.modules if n not in by_name]
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}; known: {', '.join(by_name)}")
    chosen = [by_name[n] for n in args.modules] or list(MODULES)
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.path} [{', '.join(m.only) or 'all'}] <- {' '.join(m.tests)}")
        return 0
    signal.signal(signal.SIGTERM, _stop)
    bin_dir = Path(sys.executable).parent
    scores = []
    for module in chosen:
        score = run_module(module, bin_dir)
        scores.append(score)
        text = report(score)
        (WORK / module.name / "report.txt").write_text(text + "\n")
        print(text, flush=True)
    print("\nmodule               killed/total  score")
    for s in scores:
        print(f"{s.module.name:<20} {s.killed:>6}/{s.total:<5}  {s.percent:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
