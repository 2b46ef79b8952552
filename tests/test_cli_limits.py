"""``streamq limits set|list|rm|mode`` and the flow figures of ``streamq status``, run
in-process against real servers (issue 11, points 2 and 7).

The held jobs behind the status figures are written by ``_flow_support`` as the
engine lays them out (parked keys and running flow jobs are too brief under a worker
to observe).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import orjson
import pytest
import redis
from _flow_support import base, block, count_rate_limited, hold, park_full, run_flow_jobs
from _support import clear_env

from streamq import RedisSettings, Settings
from streamq.admin import Admin
from streamq.cli import main
from streamq.limits import Limit

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's environment must not steer the command (nor reach port 6379)."""
    clear_env(monkeypatch)


@pytest.fixture
def admin(redis_url: str) -> Iterator[Admin]:
    with Admin(settings=Settings(redis=RedisSettings(url=redis_url))) as a:
        yield a


@pytest.fixture
def cli(redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """``cli("limits", "list", Q)`` -> (exit code, stdout, stderr), connected by REDIS_URL
    (a --url with the password would add its warning to every stderr)."""
    monkeypatch.setenv("REDIS_URL", redis_url)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


# ---------------------------------------------------------------------------- limits


def test_limits_set_takes_the_rate_as_n_per_period(cli: Run, admin: Admin, queue_name: str) -> None:
    code, out, err = cli("limits", "set", queue_name, "x:*", "--rate", "50/15m")

    assert (code, err) == (0, "")
    assert out.strip() == f"{queue_name}: each key matching 'x:*': 50 per 15m"
    assert admin.limits(queue_name) == [Limit("x:*", rate=50, period_ms=900_000)]


def test_limits_set_takes_rate_and_per_apart_with_concurrency_and_json(
    cli: Run, admin: Admin, queue_name: str
) -> None:
    code, out, _ = cli(
        "limits", "set", queue_name, "refresh:*", "--rate", "10", "--per", "90", "--concurrency",
        "1", "--json",
    )  # fmt: skip

    assert code == 0
    assert orjson.loads(out) == {
        "queue": queue_name,
        "limit": {
            "pattern": "refresh:*",
            "shared": False,
            "rate": 10,
            "period_ms": 90_000,
            "period": 90.0,
            "concurrency": 1,
        },
    }
    assert admin.limits(queue_name) == [Limit("refresh:*", 10, 90_000, 1)]


def test_limits_set_shared_and_list_show_every_rule(cli: Run, queue_name: str) -> None:
    assert cli("limits", "set", queue_name, "x:*", "--rate", "300/15m", "--shared")[0] == 0
    assert cli("limits", "set", queue_name, "x:*", "--rate", "50", "--per", "15m")[0] == 0
    assert cli("limits", "set", queue_name, "t:*", "--concurrency", "1")[0] == 0

    code, out, _ = cli("limits", "list", queue_name)

    assert code == 0
    lines = [line.split() for line in out.splitlines()]
    assert lines == [
        ["PATTERN", "SCOPE", "RATE", "PER", "CONCURRENCY"],
        ["t:*", "each", "-", "-", "1"],
        ["x:*", "each", "50", "15m", "-"],
        ["x:*", "shared", "300", "15m", "-"],
    ]
    code, out, _ = cli("limits", "list", queue_name, "--json")
    assert code == 0
    assert [(r["pattern"], r["shared"]) for r in orjson.loads(out)] == [
        ("t:*", False),
        ("x:*", False),
        ("x:*", True),
    ]


def test_limits_list_of_a_queue_without_limits_exits_1(cli: Run, queue_name: str) -> None:
    code, out, err = cli("limits", "list", queue_name)
    assert (code, out) == (1, "")
    assert f"no limits in {queue_name!r}" in err
    code, out, _ = cli("limits", "list", queue_name, "--json")
    assert (code, orjson.loads(out)) == (1, [])


def test_limits_rm_removes_one_rule_and_exits_1_when_there_is_none(
    cli: Run, admin: Admin, queue_name: str
) -> None:
    admin.set_limit(queue_name, "x:*", rate=50, per=900)
    admin.set_limit(queue_name, "x:*", rate=300, per=900, shared=True)

    code, out, _ = cli("limits", "rm", queue_name, "x:*", "--shared")
    assert code == 0 and "removed the shared limit 'x:*'" in out
    assert admin.limits(queue_name) == [Limit("x:*", rate=50, period_ms=900_000)]

    code, out, err = cli("limits", "rm", queue_name, "x:*", "--shared")
    assert (code, out) == (1, "") and "no shared limit 'x:*'" in err
    code, out, _ = cli("limits", "rm", queue_name, "x:*", "--json")
    assert code == 0
    assert orjson.loads(out) == {
        "queue": queue_name,
        "pattern": "x:*",
        "shared": False,
        "removed": True,
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate", "50"], "needs a period: --rate 50/15m or --per SECONDS"),
        (["--rate", "50/15m", "--per", "900"], "already names its period"),
        (["--per", "900"], "--per needs --rate"),
        (["--rate", "50/15w"], "not a duration"),
        (["--rate", "lots/15m"], "not a whole number"),
        (["--rate", "50/0s"], "more than 0 seconds"),
        (["--rate", "50/31d"], "between 1 ms and 30 days"),
        (["--concurrency", "1", "--shared"], "not to a shared limit"),
        ([], "give a rate"),
    ],
)
def test_limits_set_refuses_bad_input_with_exit_2_and_writes_nothing(
    cli: Run, redis_client: redis.Redis, queue_name: str, argv: list[str], message: str
) -> None:
    code, out, err = cli("limits", "set", queue_name, "x:*", *argv)

    assert code == 2 and out == ""
    assert message in err
    assert redis_client.exists(f"{base(queue_name)}:limits") == 0


def test_limits_set_refuses_a_bad_pattern_and_a_bad_per_before_connecting(
    cli: Run, queue_name: str
) -> None:
    code, _, err = cli("limits", "set", queue_name, "x conn", "--concurrency", "1")
    assert code == 2 and "character ' ' at position 1" in err
    code, _, err = cli("limits", "set", queue_name, "x:*", "--rate", "5", "--per", "soon")
    assert code == 2 and "--per 'soon' is not a duration" in err
    code, _, err = cli("limits", "set", queue_name, "x:*", "--concurrency", "0")
    assert code == 2 and "must be >= 1" in err


def test_limits_mode_sets_the_priority_mode(cli: Run, admin: Admin, queue_name: str) -> None:
    code, out, _ = cli("limits", "mode", queue_name, "weighted")
    assert code == 0 and out.strip() == f"{queue_name}: priority mode weighted"
    assert admin.flow_status(queue_name).mode == "weighted"
    code, out, _ = cli("limits", "mode", queue_name, "strict", "--json")
    assert orjson.loads(out) == {"queue": queue_name, "mode": "strict"}
    code, _, err = cli("limits", "mode", queue_name, "fair")
    assert code == 2 and "invalid choice" in err


# ---------------------------------------------------------------------------- status


def test_status_shows_held_jobs_waiting_keys_and_the_busiest_keys(
    cli: Run, redis_client: redis.Redis, queue_name: str
) -> None:
    r, q = redis_client, queue_name
    for i in range(3):
        hold(r, q, "x:conn-1", f"a{i}")
    hold(r, q, "x:conn-2", "b0")
    block(r, q, "x:conn-1", 10**13)
    park_full(r, q, "x:conn-2")
    run_flow_jobs(r, q, 2)
    count_rate_limited(r, q, 9)

    code, out, _ = cli("status", q)

    assert code == 0
    lines = out.splitlines()
    header, row = lines[1].split(), lines[2].split()
    assert row[header.index("HELD")] == "4"
    assert lines[3] == (
        f"{q}: 4 held, 2 running, 1 keys waiting for a rate window, 1 for a slot, "
        "9 held back in all"
    )
    assert lines[4] == "  busiest keys: x:conn-1 (3), x:conn-2 (1)"
    code, out, _ = cli("status", q, "--json")
    (doc,) = orjson.loads(out)
    assert (doc["held"], doc["running_flow"], doc["rate_limited_total"]) == (4, 2, 9)
    assert (doc["keys_rate_limited"], doc["keys_at_concurrency"]) == (1, 1)
    assert doc["busiest_keys"] == [{"key": "x:conn-1", "held": 3}, {"key": "x:conn-2", "held": 1}]


def test_status_of_a_queue_without_keyed_jobs_prints_no_flow_line(
    cli: Run, admin: Admin, queue_name: str
) -> None:
    admin.pause(queue_name)  # a trace, so the queue is listed

    code, out, _ = cli("status", queue_name)

    assert code == 0 and len(out.splitlines()) == 3


def test_jobs_lists_held_jobs_with_their_key_and_priority(
    cli: Run, redis_client: redis.Redis, queue_name: str
) -> None:
    hold(redis_client, queue_name, "x:conn-1", "j-1", priority=3)

    code, out, _ = cli("jobs", queue_name, "--state", "held")

    assert code == 0
    header, row = (line.split() for line in out.splitlines())
    assert header == ["ID", "NAME", "KEY", "PRIORITY", "ATTEMPTS", "ENQUEUED"]
    assert row[:4] == ["j-1", "?", "x:conn-1", "3"]
    code, out, _ = cli("jobs", queue_name, "--state", "held", "--json")
    (doc,) = orjson.loads(out)
    assert (doc["job_id"], doc["key"], doc["priority"]) == ("j-1", "x:conn-1", 3)
