"""The public surface: what ``streamq`` exports, sync/async twins with identical signatures,
keyword-only options, the error tree, and the typing marker shipped with the package."""

from __future__ import annotations

import inspect
import tomllib
from dataclasses import fields
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest

import streamq
import streamq.errors
from streamq import AsyncProducer, JobSpec, Producer, StreamQError

ROOT = Path(__file__).resolve().parent.parent


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_all_lists_exactly_the_public_names_and_each_exists() -> None:
    assert len(streamq.__all__) == len(set(streamq.__all__))
    assert streamq.__all__ == sorted(streamq.__all__)
    for name in streamq.__all__:
        assert hasattr(streamq, name), name
    public = {
        name
        for name, value in vars(streamq).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public | {"__version__"} == set(streamq.__all__)
    # Everything star-imports cleanly.
    ns: dict[str, object] = {}
    exec("from streamq import *", ns)
    assert set(streamq.__all__) <= set(ns)


def test_the_version_matches_the_package_metadata() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert streamq.__version__ == meta["project"]["version"]


def test_every_exception_is_exported_and_rooted_at_streamq_error() -> None:
    errors = [
        v
        for v in vars(streamq.errors).values()
        if isinstance(v, type) and issubclass(v, BaseException)
    ]
    assert len(errors) >= 10
    for exc in errors:
        assert issubclass(exc, StreamQError), exc
        assert exc.__name__ in streamq.__all__, exc
        assert exc.__name__ in (streamq.errors.__doc__ or ""), f"{exc.__name__} not in tree doc"
        assert not issubclass(exc, ConnectionError | TimeoutError), "shadows a built-in"


def test_producer_and_async_producer_have_the_same_public_methods_and_signatures() -> None:
    sync, asyn = public_methods(Producer), public_methods(AsyncProducer)
    assert sync.keys() == asyn.keys()
    for name, sig in sync.items():
        assert sig == asyn[name], f"{name}: {sig} != {asyn[name]}"
    assert inspect.signature(Producer.__init__) == inspect.signature(AsyncProducer.__init__)


def test_async_producer_methods_are_coroutines_and_sync_ones_are_not() -> None:
    # Methods of the shared base (e.g. ``keys``) do no I/O and stay plain functions.
    own = [n for n in public_methods(AsyncProducer) if n in vars(AsyncProducer)]
    assert len(own) >= 12
    for name in own:
        assert inspect.iscoroutinefunction(getattr(AsyncProducer, name)), name
        assert not inspect.iscoroutinefunction(getattr(Producer, name)), name


def test_both_producers_are_context_managers() -> None:
    assert hasattr(Producer, "__enter__") and hasattr(Producer, "__exit__")
    assert inspect.iscoroutinefunction(AsyncProducer.__aenter__)
    assert inspect.iscoroutinefunction(AsyncProducer.__aexit__)


def test_job_options_are_keyword_only() -> None:
    # A handler's own argument can never be mistaken for a job option (saq's pitfall).
    params = inspect.signature(Producer.enqueue).parameters
    positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["self", "queue", "name", "data"]
    for option in ("job_id", "delay", "at", "max_retries", "backoff", "timeout"):
        assert params[option].kind is inspect.Parameter.KEYWORD_ONLY, option
    resched = inspect.signature(Producer.reschedule).parameters
    assert resched["delay"].kind is resched["at"].kind is inspect.Parameter.KEYWORD_ONLY


def test_job_spec_mirrors_the_enqueue_arguments() -> None:
    params = list(inspect.signature(Producer.enqueue).parameters)[2:]
    # ``durable`` is a property of the call (one WAITAOF per batch), not of each job.
    assert params[-1] == "durable"
    assert [f.name for f in fields(JobSpec)] == params[:-1]


@pytest.mark.parametrize("cls", [Producer, AsyncProducer])
def test_public_methods_are_documented(cls: type) -> None:
    for name in public_methods(cls):
        assert inspect.getdoc(getattr(cls, name)), f"{cls.__name__}.{name} has no docstring"


def test_py_typed_and_lua_scripts_ship_as_package_data() -> None:
    assert resources.files("streamq").joinpath("py.typed").is_file()
    lua = resources.files("streamq.protocol").joinpath("lua")
    assert any(p.name.endswith(".lua") for p in lua.iterdir())
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = data["package-data"]["streamq"]
    assert "py.typed" in globs
    assert "protocol/lua/*.lua" in globs and "protocol/lua/lib/*.lua" in globs
