"""
Mutation testing of the core modules: ``./dev mutate [MODULE ...]``.

For each module, cosmic-ray makes every small change its operators know (a
``>`` that becomes ``>=``, a ``+`` that becomes ``-``, a condition that is
negated, a constant that moves by one...) one at a time, and runs the unit
tests that guard that module against each.  A mutant the tests still pass
is a rule nothing checks: kill it with a test, or, when no test could
tell it from the code (an equivalent mutant), mark its operator on its line
with ``# equivalent: Eq_LtE`` (or every mutant of the line with
``# pragma: no mutate``) and a comment saying why.  Mutants inside
annotations are skipped: annotations are never run.  Each survivor is
reported with the lines it changed.  docs/testing.md has the details and
each module's score.

The work happens in a copy of the tracked files in a temporary directory,
never in the working tree, so an interrupted run cannot leave a mutant
behind.  Each module is tested by the fast unit modules listed in ``CORE``
(seconds, not the whole suite): the rule must be caught where it lives.

The Redis backend's Lua scripts are outside cosmic-ray's reach; their
hand-written mutants (``LUA_MUTANTS``) are applied the same way, one at a
time, and each must make the Redis contract suite fail.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: module -> the unit tests that must catch every change to it
CORE = {
    "marketplace/store/ledger_rules.py": ["tests.store.test_ledger_rules", "tests.store.test_audit",
                                          "tests.store.test_memory"],
    "marketplace/store/records.py": ["tests.store.test_audit", "tests.store.test_memory"],
    "marketplace/store/memory/ledger.py": ["tests.store.test_memory"],
    "marketplace/store/memory/catalog.py": ["tests.market.test_store_contract.MemoryMarketStoreTests",
                                            "tests.market.test_store_contract.MemoryIdOrderTests",
                                            "tests.market.test_store_contract.MemoryLeaseTimingTests"],
    "marketplace/laptop/replication.py": ["tests.laptop.test_replication",
                                          "tests.laptop.test_hostile_replica",
                                          "tests.laptop.test_failure_detection",
                                          "tests.laptop.test_replication_requests",
                                          "tests.laptop.test_replication_primary",
                                          "tests.laptop.test_replication_backup"],
    "protocols/laptop.py": ["tests.laptop.test_codec"],
    "protocols/nsframe.py": ["tests.tradechat.test_nsframe"],
    "protocols/branch.py": ["tests.branch.test_codec"],
}

#: script, text, its mutant, and what the mutant breaks
LUA_MUTANTS = [
    ("ledger_transfer.lua", "if amount > balance then", "if amount >= balance then",
     "a whole balance can no longer be transferred"),
    ("ledger_transfer.lua", "+ amount > tonumber(ARGV[6])", "+ amount >= tonumber(ARGV[6])",
     "a transfer up to the maximum balance is refused"),
    ("ledger_transfer.lua", "record(KEYS[6], KEYS[7], ARGV[5], 'transfer_in', ARGV[4], ARGV[3])",
     "local _ = KEYS[6]", "a transfer takes money from the source without paying the target"),
    ("ledger_withdraw.lua", "if tonumber(ARGV[3]) > balance then",
     "if tonumber(ARGV[3]) >= balance then", "a whole balance can no longer be withdrawn"),
    ("ledger_withdraw.lua", "add_total('withdrawal', ARGV[3])", "add_total('deposit', ARGV[3])",
     "a withdrawal counts in the wrong running total"),
    ("ledger_deposit.lua", "if balance + tonumber(ARGV[3]) > tonumber(ARGV[5]) then",
     "if balance + tonumber(ARGV[3]) > tonumber(ARGV[5]) + 1 then",
     "a deposit may take a balance one above the maximum"),
    ("ledger_deposit.lua", "if balance + tonumber(ARGV[3]) > tonumber(ARGV[5]) then",
     "if balance + tonumber(ARGV[3]) >= tonumber(ARGV[5]) then",
     "a deposit up to the maximum balance is refused"),
    ("ledger_prelude.lua", "local seen = redis.call('GET', KEYS[3])", "local seen = false",
     "a retried operation is applied again instead of replayed"),
    ("ledger_prelude.lua", "redis.call('SET', KEYS[3], status .. ':' .. value, 'EX', ARGV[2])",
     "redis.call('SET', KEYS[3], 'ok:' .. value, 'EX', ARGV[2])",
     "a refusal is replayed as a success"),
    ("ledger_prelude.lua", "redis.call('HINCRBY', KEYS[1], name .. ':carry', 1)",
     "redis.call('HINCRBY', KEYS[1], name .. ':carry', 2)",
     "a running total past 2^53 is counted twice over"),
    ("ledger_open.lua", "add_total('opening', ARGV[4])", "add_total('opening', '0')",
     "opening balances are left out of the audit's totals"),
    ("ledger_prelude.lua", "for i = #old, 1, -1 do", "for i = 1, #old do",
     "an earlier release's history comes back in reverse order"),
    ("ledger_prelude.lua", "if count == 1 then", "if count == 0 then",
     "a money operation leaves an earlier release's history behind"),
    ("ledger_prelude.lua", "redis.call('LTRIM', history_key, dropped, -1)",
     "redis.call('LTRIM', history_key, dropped - 1, -1)",
     "retention keeps an entry its checkpoint already counts"),
    ("ledger_history.lua", "if txn < before then", "if txn <= before then",
     "a page before an id includes that id"),
    ("ledger_history.lua", "math.max(0, upto - limit)", "math.max(0, upto - limit - 1)",
     "a page holds one entry more than asked"),
    ("ledger_audit.lua", "if #entries == 0 and adopt_legacy(", "if false and adopt_legacy(",
     "an audit misses an earlier release's histories"),
    ("market_lease_reserve.lua", "if tonumber(qty) < need then", "if tonumber(qty) <= need then",
     "the last units in stock can no longer be reserved"),
    ("market_lease_reserve.lua", "'qty', -tonumber(need))", "'qty', 1 - tonumber(need))",
     "a reservation takes one unit fewer than it holds (oversells)"),
    ("market_lease_reserve.lua", "if left == 0 then", "if left < 0 then",
     "a sold-out item stays in the in-stock index"),
    ("market_lease_prelude.lua", "if redis.call('HINCRBY', prefix .. 'item:' .. id, 'qty', need) > 0 then",
     "if redis.call('HINCRBY', prefix .. 'item:' .. id, 'qty', need) > need then",
     "stock a lapse or release puts back is not found by searches again"),
    ("market_lease_prelude.lua", "or tonumber(redis.call('HGET', key, 'deadline') or '0') > now then",
     "or tonumber(redis.call('HGET', key, 'deadline') or '0') < now then",
     "leases lapse before their deadline and outlive it"),
    ("market_lease_settle.lua", "if attempt ~= ARGV[4] then", "if false then",
     "a superseded attempt can still be committed"),
    ("market_lease_settle.lua", "'sold', need)", "'sold', 0)",
     "committed units are not counted as sold"),
    ("market_lease_settle.lua", "if ARGV[5] ~= '' then", "if false then",
     "a commit naming its buyer owes no record, so an unrecorded purchase is never swept"),
    ("market_lease_owed.lua", "now_ms() - tonumber(ARGV[3])", "now_ms()",
     "a sweep records a purchase its front end is still recording"),
    ("market_purchase_record.lua", "if marker == '1' then", "if false then",
     "a purchase recorded again takes its units out of the cart again"),
    ("market_purchase_record.lua", "  if not marker then", "  if true then",
     "a purchase the sweep recorded is in the history twice after the buyer's retry"),
    ("market_purchase_record.lua", "  if with_session then\n    take_out",
     "  if false then\n    take_out",
     "the buyer's retry after the sweep leaves the bought units in the cart"),
]

#: the tests a Lua mutant must fail, by the family its script's name starts with
LUA_TESTS = {
    "ledger": ["tests.store.test_redis.RedisStoreContractTests",
               "tests.store.test_redis.LegacyHistoryTests"],
    "market": ["tests.market.test_store_contract.RedisMarketStoreTests"],
}


def lua_tests(script: str) -> list[str]:
    return LUA_TESTS[script.partition("_")[0]]


#: seconds one mutant's tests may take before it counts as killed (a hang)
TIMEOUT = 120.0


def copy_tree(destination: str) -> None:
    """The tracked and untracked-but-not-ignored files, as in the working tree."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, check=True, capture_output=True).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = os.path.join(REPO, name)
        if not os.path.isfile(source):
            continue
        target = os.path.join(destination, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target)


def trial_command(tests: list[str]) -> str:
    return f"{sys.executable} -m twisted.trial --exitfirst {' '.join(tests)}"


#: the output recorded for a mutant left out by ``--lines``
OUTSIDE = "outside the lines asked for"


def mutate_module(module: str, tests: list[str], work: str, lines=None) -> dict:
    """
    Run cosmic-ray over ``module`` in the copy ``work``; return the tally.
    ``lines``, a (first, last) pair, restricts the run to mutants that end
    on those lines, so a large module can be done in parts.
    """
    _check_number_offsets()
    config = os.path.join(work, "cosmic-ray.toml")
    session = os.path.join(work, f"{module.replace('/', '_')}.sqlite")
    with open(config, "w") as out:
        out.write(
            "[cosmic-ray]\n"
            f"module-path = {json.dumps(module)}\n"
            f"timeout = {TIMEOUT}\n"
            "excluded-modules = []\n"
            f"test-command = {json.dumps(trial_command(tests))}\n"
            "[cosmic-ray.distributor]\n"
            'name = "local"\n'
        )
    tools = os.path.dirname(sys.executable)
    run = dict(cwd=work, check=True, capture_output=True)
    subprocess.run([os.path.join(tools, "cosmic-ray"), "init", config, session], **run)
    subprocess.run([os.path.join(tools, "cr-filter-pragma"), session], **run)
    with open(os.path.join(work, module)) as file:
        source = file.read()
    spans = annotation_spans(source)
    skip(session, lambda m: inside(spans, m.start_pos, m.end_pos), "inside an annotation")
    marked = equivalent_marks(source)
    skip(session, lambda m: is_marked(marked, m.end_pos[0], m.operator_name, m.occurrence),
         "marked equivalent")
    if lines is not None:
        skip(session, lambda m: not lines[0] <= m.end_pos[0] <= lines[1], OUTSIDE)
    subprocess.run([os.path.join(tools, "cosmic-ray"), "exec", config, session], **run)
    dump = subprocess.run([os.path.join(tools, "cosmic-ray"), "dump", session], **run).stdout
    return tally(dump.decode())


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """
    Where ``source``'s annotations are, as ((line, column), (line, column))
    ranges.  Annotations are never run for what they compute (the core
    modules postpone them, and nothing reads them back), so a mutant inside
    one, ``int | None`` becoming ``int - None``, cannot be observed.
    """
    spans = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotation = node.returns
        elif isinstance(node, (ast.arg, ast.AnnAssign)):
            annotation = node.annotation
        else:
            continue
        if annotation is not None:
            spans.append(((annotation.lineno, annotation.col_offset),
                          (annotation.end_lineno, annotation.end_col_offset)))
    return spans


#: ``# equivalent: Eq_LtE, Eq_GtE -- why``: those operators' mutants on this line are
#: equivalent (``# pragma: no mutate`` would skip every mutant on the line);
#: ``NumberReplacer+1`` or ``NumberReplacer-1`` names one of a number's two mutants
_EQUIVALENT = re.compile(r"#\s*equivalent:\s*([\w+-]+(?:\s*,\s*[\w+-]+)*)")

#: What cosmic-ray's NumberReplacer adds to a number, by its mutants' occurrence
#: (each number gets one mutant of each, in this order)
NUMBER_OFFSETS = ("+1", "-1")


def equivalent_marks(source: str) -> dict[int, tuple[str, ...]]:
    """Line number -> the operators marked equivalent on it."""
    marks = {}
    for number, line in enumerate(source.splitlines(), 1):
        found = _EQUIVALENT.search(line)
        if found:
            marks[number] = tuple(name.strip() for name in found.group(1).split(","))
    return marks


def _check_number_offsets() -> None:
    """Refuse to run if cosmic-ray's NumberReplacer no longer makes the mutants marks name."""
    from cosmic_ray.operators.number_replacer import OFFSETS

    made = tuple(f"{offset:+d}" for offset in OFFSETS)
    if made != NUMBER_OFFSETS:
        raise SystemExit(f"cosmic-ray's NumberReplacer adds {made}, not {NUMBER_OFFSETS}: "
                         "update NUMBER_OFFSETS and the NumberReplacer+1/-1 marks")


def is_marked(marks, line: int, operator_name: str, occurrence: int = 0) -> bool:
    """
    Whether a mutant by ``operator_name`` ending on ``line`` is marked
    equivalent: a mark names the end of the operator's name after a ``_``
    (``Eq_LtE``) or the whole of it (``NumberReplacer``), or one of a
    number's two mutants (``NumberReplacer+1``: the one that adds one,
    told apart by ``occurrence``) when only that one is equivalent.
    """
    offset = NUMBER_OFFSETS[occurrence % len(NUMBER_OFFSETS)]
    return any(operator_name.endswith(("_" + name, "/" + name))
               or operator_name == "core/NumberReplacer" and name == "NumberReplacer" + offset
               for name in marks.get(line, ()))


def inside(spans, start, end) -> bool:
    return any(first <= tuple(start) and tuple(end) <= last for first, last in spans)


def skip(session: str, condition, why: str) -> None:
    """Mark the session's mutants that meet ``condition`` skipped, as the pragma does."""
    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(session) as db:
        done = {job_id for job_id, _ in db.results}
        for item in db.work_items:
            if item.job_id not in done and all(map(condition, item.mutations)):
                db.set_result(item.job_id,
                              WorkResult(output=why, worker_outcome=WorkerOutcome.SKIPPED))


def tally(dump: str) -> dict:
    killed, survivors, skipped = 0, [], 0
    for line in filter(None, dump.splitlines()):
        item, result = json.loads(line)
        if result is not None and result.get("output") == OUTSIDE:
            continue
        if result is None or result.get("worker_outcome") == "skipped":
            skipped += 1
            continue
        if result.get("test_outcome") == "survived":
            mutation = item["mutations"][0]
            survivors.append(f"line {mutation['start_pos'][0]}: {mutation['operator_name']}"
                             f" #{mutation['occurrence']}" + changed_lines(result.get("diff")))
        else:
            killed += 1
    return {"killed": killed, "survivors": survivors, "skipped": skipped}


def changed_lines(diff: str | None) -> str:
    """The mutant's removed and added lines from its diff, indented under its name."""
    lines = [line for line in (diff or "").splitlines()
             if line[:1] in "-+" and not line.startswith(("---", "+++"))]
    return "".join(f"\n      {line.rstrip()}" for line in lines)


def mutate_lua(work: str) -> dict:
    scripts = os.path.join(work, "marketplace", "store", "redis", "scripts")
    killed, survivors = 0, []
    for script, text, mutant, meaning in LUA_MUTANTS:
        path = os.path.join(scripts, script)
        with open(path) as file:
            original = file.read()
        if original.count(text) != 1:
            survivors.append(f"{script}: {text!r} not found once (update LUA_MUTANTS)")
            continue
        with open(path, "w") as file:
            file.write(original.replace(text, mutant))
        try:
            outcome = subprocess.run(trial_command(lua_tests(script)).split(), cwd=work,
                                     capture_output=True, timeout=TIMEOUT * 3)
            caught = outcome.returncode != 0
        except subprocess.TimeoutExpired:
            caught = True
        finally:
            with open(path, "w") as file:
                file.write(original)
        if caught:
            killed += 1
        else:
            survivors.append(f"{script}: {text!r} -> {mutant!r} ({meaning})")
    return {"killed": killed, "survivors": survivors, "skipped": 0}


def report(name: str, result: dict, seconds: float, out=sys.stdout) -> None:
    total = result["killed"] + len(result["survivors"])
    score = 100.0 * result["killed"] / total if total else 100.0
    skipped = f", {result['skipped']} skipped as equivalent" if result["skipped"] else ""
    print(f"{name}: {result['killed']} of {total} mutants killed ({score:.1f}%)"
          f" in {seconds:.0f}s{skipped}", file=out)
    for survivor in result["survivors"]:
        print(f"  survived: {survivor}", file=out)
    out.flush()


def line_range(text: str) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    if not (dash and first.isdigit() and last.isdigit() and 0 < int(first) <= int(last)):
        raise argparse.ArgumentTypeError(f"not a range of lines like 1-200: {text!r}")
    return int(first), int(last)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev mutate",
        description="Mutation testing of the core modules (default: all of them, and the Lua "
                    "scripts' hand-written mutants).")
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help=f"paths of core modules, or 'lua'; known: {', '.join(CORE)}")
    parser.add_argument("--lines", type=line_range, metavar="FIRST-LAST",
                        help="only the mutants on these lines of each module (to run a large "
                             "module in parts)")
    arguments = parser.parse_args(argv)
    modules = arguments.modules or [*CORE, "lua"]
    unknown = [m for m in modules if m != "lua" and m not in CORE]
    if unknown:
        parser.error(f"not a core module: {', '.join(unknown)} (add it and its tests to CORE)")
    survived = False
    with tempfile.TemporaryDirectory(prefix="mutate-") as work:
        copy_tree(work)
        for module in modules:
            started = time.monotonic()
            if module == "lua":
                result = mutate_lua(work)
            else:
                result = mutate_module(module, CORE[module], work, arguments.lines)
            name = module if module == "lua" or arguments.lines is None else (
                f"{module} lines {arguments.lines[0]}-{arguments.lines[1]}")
            report(name, result, time.monotonic() - started)
            survived = survived or bool(result["survivors"])
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
