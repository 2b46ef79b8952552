"""Run the chaos suite and the durability/security tests, and regenerate
``docs/reliability.md`` from their figures.

    python -m tests.chaos.report                 # both passes, write the doc
    python -m tests.chaos.report --part security # only the durability/security pass
    python -m tests.chaos.report --from FILE     # re-render from saved JSON-lines file(s)
    python -m tests.chaos.report -- -k storm     # extra pytest arguments (chaos pass) after --

Each test appends one JSON line (outcome, duration, figures) to the file named by
``SQ_CHAOS_REPORT`` (see ``tests/_report_plugin.py``); both passes write to one file, and
this script renders it: the chaos scenarios, then a "Durability and security" section
(WAITAOF durable enqueue, the ACL user, TLS, web auth; see ``SECURITY``). The figures are
those of the run that produced the file, nothing else. Exit code: the first failing
pass's pytest code, or 3 when the chaos suite passed but took longer than its budget
(``SUITE_BUDGET_S``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests._report_plugin import REPORT_ENV
from tests.chaos._chaos_support import ROOT, SUITE_BUDGET_S

DOC = ROOT / "docs" / "reliability.md"
# Figures shown in the summary table, in this order (others go to the detail lists).
SUMMARY = ("jobs", "faults", "lost", "duplicated", "dead", "pel_after")
RECOVERY = re.compile(r"recovery|_fail_s$|shutdown_s|frozen_s|lateness")


def run_suite(extra: Sequence[str], out: Path) -> tuple[int, float]:
    """Run the chaos scenarios with the report plugin writing to ``out``."""
    env = dict(os.environ, **{REPORT_ENV: str(out)})
    cmd = [sys.executable, "-m", "pytest", "tests/chaos", "-m", "chaos", "-q", *extra]
    t0 = time.monotonic()
    code = subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode
    wall = time.monotonic() - t0
    with open(out, "a", encoding="utf-8") as fh:  # kept with the figures, for --from
        fh.write(json.dumps({"meta": {"wall_s": round(wall, 1), "exit_code": code}}) + "\n")
    return code, wall


# ---------------------------------------------------------------------------- durability, security

#: The second pass: (section, test node ids). Each id runs with all its parameters.
SECURITY: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Durable enqueue (WAITAOF)",
        (
            "tests/test_durability.py::test_a_durable_enqueue_waits_for_waitaof_in_the_same_round_trip",
            "tests/test_durability.py::test_durable_enqueue_is_refused_before_writing_on_redis_without_waitaof",
            "tests/test_durability.py::test_durable_enqueue_is_refused_when_aof_is_off",
        ),
    ),
    (
        "Least-privilege ACL user",
        (
            "tests/test_acl.py::test_the_core_path_runs_as_the_least_privilege_user",
            "tests/test_acl.py::test_the_user_cannot_touch_other_keys_nor_run_admin_commands",
        ),
    ),
    (
        "TLS",
        (
            "tests/test_tls.py::test_a_burst_worker_runs_a_job_over_tls",
            "tests/test_tls.py::test_a_client_that_does_not_trust_the_ca_is_refused",
            "tests/test_tls.py::test_a_certificate_failure_says_so_and_names_the_setting",
            "tests/test_tls.py::test_plain_tcp_is_not_served",
        ),
    ),
    (
        "Web auth",
        (
            "tests/test_security.py::test_every_route_with_queue_data_requires_the_token",
            "tests/test_web.py::test_tokens_are_compared_in_constant_time",
            "tests/test_security.py::test_without_a_token_mutations_still_refuse_cross_site_posts",
            "tests/test_security.py::test_without_a_token_the_dispatch_route_refuses_cross_site_posts",
            "tests/test_dashboard.py::test_a_cross_site_form_post_cannot_pause_a_queue",
            "tests/test_dashboard.py::test_cross_site_mutations_are_refused_even_without_a_token",
        ),
    ),
)
SECURITY_IDS = tuple(nodeid for _, ids in SECURITY for nodeid in ids)
#: Figures shown in the summary table when a test has them, in this order.
KEY_FIGURES = (
    "jobs",
    "round_trips_per_durable_enqueue",
    "waitaof_replies",
    "durable_enqueue_median_ms",
    "plain_enqueue_median_ms",
    "keys_after_refusal",
    "jobs_run",
    "distinct_commands_sent",
    "forbidden_attempts",
    "refused",
    "jobs_run_over_tls",
    "negotiated",
    "refused_handshakes",
    "plain_tcp_pings_refused",
    "routes_checked",
    "refused_without_token",
    "refused_with_wrong_token",
    "cross_site_posts_refused",
    "compare_digest_calls",
    "cross_site_post_status",
    "pause_flag_set",
)
#: Parameter ids that name the server kind (tests/conftest.py's ``server`` fixture).
SERVER_IDS = ("redis7", "valkey8")


def run_security(out: Path) -> tuple[int, float]:
    """Run the durability and security tests with the report plugin writing to ``out``."""
    env = dict(os.environ, **{REPORT_ENV: str(out)})
    cmd = [sys.executable, "-m", "pytest", *SECURITY_IDS, "-q"]
    t0 = time.monotonic()
    code = subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode
    wall = time.monotonic() - t0
    meta = {"security_wall_s": round(wall, 1), "security_exit_code": code}
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"meta": meta}) + "\n")
    return code, wall


def is_chaos(row: dict[str, Any]) -> bool:
    """A chaos scenario's row (the rest come from the durability/security pass)."""
    return str(row["nodeid"]).startswith("tests/chaos/")


def _split_nodeid(nodeid: str) -> tuple[str, str]:
    """``file::test[params]`` -> (``file::test``, ``params``)."""
    base, _, params = nodeid.partition("[")
    return base, params.removesuffix("]")


def _kind_suffix(row: dict[str, Any]) -> str:
    """`` [valkey8]`` for a scenario run once per server kind (the cluster and Sentinel
    ones), else nothing: the single-server scenarios all run on redis7."""
    params = _split_nodeid(row["nodeid"])[1].split("-")
    kind = next((p for p in params if p in SERVER_IDS), "")
    return f" [{kind}]" if kind else ""


def _server(row: dict[str, Any]) -> str:
    params = _split_nodeid(row["nodeid"])[1].split("-")
    kind = next((p for p in params if p in SERVER_IDS), "")
    version = str(row["figures"].get("server", ""))
    if kind and version:
        return f"{kind} ({version})"
    return kind or version or "none (no server contacted)"


_ACRONYMS = {w.lower(): w for w in ("WAITAOF", "AOF", "ACL", "TLS", "CA", "TCP", "DLQ")}


def _test_title(row: dict[str, Any]) -> str:
    base, params = _split_nodeid(row["nodeid"])
    words = base.rsplit("::", 1)[-1].removeprefix("test_").split("_")
    title = " ".join(_ACRONYMS.get(w, w) for w in words)
    title = title[:1].upper() + title[1:]
    other = [p for p in params.split("-") if p and p not in SERVER_IDS]
    return f"{title} [{'-'.join(other)}]" if other else title


def _skip_reason(row: dict[str, Any]) -> str:
    text = str(row.get("longrepr", ""))
    m = re.search(r"Skipped: (.*?)['\"]\)?\s*$", text, re.DOTALL)
    reason = m.group(1) if m else text.strip()
    return reason.replace(f"{ROOT}/", "")


def _cell(value: str) -> str:
    return value.replace("|", "\\|")


def _key_figures(f: dict[str, Any]) -> str:
    keys = [k for k in KEY_FIGURES if k in f] or [k for k in f if k != "server"][:2]
    return "; ".join(f"{k} {_fmt(f[k])}" for k in keys)


def _security_order(row: dict[str, Any]) -> tuple[int, str]:
    base = _split_nodeid(row["nodeid"])[0]
    index = SECURITY_IDS.index(base) if base in SECURITY_IDS else len(SECURITY_IDS)
    return index, row["nodeid"]


def render_security(rows: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    """The "Durability and security" section: a summary table, then each test's figures."""
    rows = sorted(rows, key=_security_order)
    group_of = {nodeid: group for group, ids in SECURITY for nodeid in ids}
    outcomes: dict[str, int] = {}
    for r in rows:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    wall = meta.get("security_wall_s")
    lines = [
        "# Durability and security",
        "",
        "A second pytest pass (`python -m tests.chaos.report` runs it after the chaos suite)",
        "over the tests that prove the durable enqueue (WAITAOF: the fsync is confirmed in the",
        "same round trip, refused before writing where it cannot be), the least-privilege ACL",
        "user (the whole core path runs as it; forbidden commands and keys are refused), TLS",
        "(jobs over `rediss://`, untrusted clients and plain TCP refused) and the web app's",
        "auth (a bearer token on every route, compared in constant time, cross-site posts",
        "refused). Each test records what it measured; a test skipped on a server kind",
        "(e.g. TLS on a Valkey built without it) is listed with its reason.",
        "",
        f"- Tests: {len(rows)} ("
        + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))
        + (f"); whole pass {wall:.0f} s." if wall is not None else ")."),
        "",
        "| area | test | server | outcome | s | key figures |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        group = group_of.get(_split_nodeid(r["nodeid"])[0], "other")
        figures = _skip_reason(r) if r["outcome"] == "skipped" else _key_figures(r["figures"])
        lines.append(
            f"| {group} | {_cell(_test_title(r))} | {_server(r)} | {r['outcome']} | "
            f"{r['duration_s']:g} | {_cell(figures)} |"
        )
    lines.append("")
    current = None
    for r in rows:
        group = group_of.get(_split_nodeid(r["nodeid"])[0], "other")
        if group != current:
            lines += [f"## {group}", ""]
            current = group
        lines += [f"### {_test_title(r)}, on {_server(r)}", ""]
        lines.append(f"Outcome: **{r['outcome']}** in {r['duration_s']:g} s (`{r['nodeid']}`).")
        if r["outcome"] == "skipped":
            lines.append(f"Skipped: {_skip_reason(r)}.")
        lines.append("")
        for k, v in r["figures"].items():
            if k != "server":
                lines.append(f"- {k}: {_fmt(v)}")
        if r["outcome"] == "failed":
            lines += ["", "```", r.get("longrepr", "").strip()[-1200:], "```"]
        lines.append("")
    return lines


def load(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The scenario rows (in scenario order) and the run's metadata."""
    rows, meta = [], {}
    for line in path.read_text().splitlines():
        if line.strip():
            obj = json.loads(line)
            if "meta" in obj:
                meta.update(obj["meta"])
            else:
                rows.append(obj)
    return sorted(rows, key=_order), meta


def _order(row: dict[str, Any]) -> tuple[int, str]:
    m = re.match(r"(\d+)(\S*)\.", row["doc"])
    return (int(m.group(1)), m.group(2)) if m else (999, row["name"])


def _title(row: dict[str, Any]) -> str:
    return row["doc"].split("\n", 1)[0].strip() or row["name"]


def _body(row: dict[str, Any]) -> str:
    parts = row["doc"].split("\n\n", 1)
    return " ".join(parts[1].split()) if len(parts) > 1 else ""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        shown = ", ".join(_fmt(v) for v in value[:24])
        return f"[{shown}{', ...' if len(value) > 24 else ''}]"
    return str(value)


def _server_version() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        return "unknown"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"v=(\S+)", out.stdout)
    return f"Redis {m.group(1)}" if m else out.stdout.strip()


def render(rows: list[dict[str, Any]], wall_s: float | None, meta: dict[str, Any]) -> str:
    """The whole doc: the chaos scenarios, then the durability and security tests."""
    chaos = [r for r in rows if is_chaos(r)]
    security = [r for r in rows if not is_chaos(r)]
    lines = render_chaos(chaos, wall_s) if chaos else []
    if security:
        lines += render_security(security, meta)
    return "\n".join(lines).rstrip() + "\n"


def render_chaos(rows: list[dict[str, Any]], wall_s: float | None) -> list[str]:
    """The chaos scenarios: the header, a summary table and each scenario's figures."""
    total = sum(r["duration_s"] for r in rows)
    outcomes: dict[str, int] = {}
    for r in rows:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability: proof under faults",
        "",
        "Generated by `python -m tests.chaos.report` from the last run of the chaos suite",
        "(`pytest -m chaos tests/chaos`) and of the durability and security tests (last",
        "section); do not edit by hand. Every scenario injects faults",
        "into a live system (worker processes, a real Redis) and ends with an **exact",
        "ledger**: every job whose enqueue returned is completed, dead or cancelled, none",
        "missing, and the consumer group's PEL is empty. The ledger is kept outside the",
        "Redis under test (an append-only file per worker process, written with one",
        "`os.write` per run, plus the producer's list of acknowledged ids). A job may run",
        "twice only when the process running it was killed, froze, or handed it back.",
        "",
        f"- Run: {when}; {platform.python_implementation()} {platform.python_version()}, "
        f"{_server_version()}, {os.cpu_count()} CPUs, {platform.system()}.",
        f"- Scenarios: {len(rows)} ("
        + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))
        + f"); time in scenarios {total:.0f} s"
        + (f", whole run {wall_s:.0f} s" if wall_s is not None else "")
        + f" (budget {SUITE_BUDGET_S:.0f} s).",
        "- `xfailed` marks a scenario that fails today because of a known engine bug",
        "  (strict: it turns red as soon as the bug is fixed, so the mark gets removed).",
        "",
        "| # | scenario | outcome | s | " + " | ".join(SUMMARY) + " |",
        "|---|---|---|---|" + "---|" * len(SUMMARY),
    ]
    for r in rows:
        f = r["figures"]
        num, _, title = _title(r).partition(". ")
        title = title.rstrip(".") + _kind_suffix(r)
        cells = [_fmt(f.get(k, "")) for k in SUMMARY]
        lines.append(
            f"| {num} | {title} | {r['outcome']} | {r['duration_s']:g} | "
            + " | ".join(cells)
            + " |"
        )
    lines.append("")
    for r in rows:
        f = r["figures"]
        heading = f"{_title(r).rstrip('.')}{_kind_suffix(r)}." if _kind_suffix(r) else _title(r)
        lines += [f"## {heading}", "", _body(r), ""]
        lines.append(f"Outcome: **{r['outcome']}** in {r['duration_s']:g} s (`{r['nodeid']}`).")
        if r["outcome"] == "skipped":
            lines.append(f"Skipped: {_skip_reason(r)}.")
        if r.get("xfail_reason"):
            reason = r["xfail_reason"].removeprefix("engine bug: ")
            lines.append(f"Known engine bug: {reason}.")
        lines.append("")
        recov = {k: v for k, v in f.items() if RECOVERY.search(k)}
        rest = {k: v for k, v in f.items() if k not in recov}
        for k, v in rest.items():
            lines.append(f"- {k}: {_fmt(v)}")
        for k, v in recov.items():
            lines.append(f"- {k}: {_fmt(v)}")
        if r["outcome"] == "failed":
            lines += ["", "```", r.get("longrepr", "").strip()[-1200:], "```"]
        lines.append("")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--from",
        dest="sources",
        type=Path,
        action="append",
        help="render this JSON-lines file instead of running (repeatable: files are merged)",
    )
    parser.add_argument(
        "--part",
        choices=("all", "chaos", "security"),
        default="all",
        help="which passes to run (default both)",
    )
    parser.add_argument("--output", type=Path, default=DOC, help=f"default {DOC}")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    code, wall = 0, None
    if args.sources:
        sources: list[Path] = args.sources
    else:
        fd, name = tempfile.mkstemp(prefix="chaos-", suffix=".jsonl")
        os.close(fd)
        sources = [Path(name)]
        if args.part in ("all", "chaos"):
            code, wall = run_suite(args.pytest_args, sources[0])
        if args.part in ("all", "security"):
            # Run even when the chaos pass failed: the doc keeps both sections.
            security_code = run_security(sources[0])[0]
            code = code or security_code
    rows, meta = [], {}
    for source in sources:
        more_rows, more_meta = load(source)
        rows += more_rows
        meta.update(more_meta)
    wall = meta.get("wall_s", wall)
    shown = ", ".join(map(str, sources))
    if not rows:
        print(f"no test results in {shown}", file=sys.stderr)
        return code or 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(rows, wall, meta))
    n_chaos = sum(is_chaos(r) for r in rows)
    print(
        f"wrote {args.output} ({n_chaos} scenarios, {len(rows) - n_chaos} durability/security "
        f"tests, figures from {shown})"
    )
    if wall is not None and wall > SUITE_BUDGET_S:
        print(f"error: the suite took {wall:.0f} s, over its {SUITE_BUDGET_S:.0f} s budget")
        return code or 3
    return code


if __name__ == "__main__":
    sys.exit(main())
