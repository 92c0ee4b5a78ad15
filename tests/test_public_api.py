"""The tracing API of the published ``galileo`` 2.7.0, name by name and signature by signature, is ours.

The published side is checked in (tests/data/published_api_2.7.0.json, written by
tests/data/make_published_api.py from the installed published package; that file also says which of the
published ``galileo.__all__`` names are the tracing API and why the others are not). Each entry is compared
with what ``import galileo`` gives here:

- a callable: the published positional parameters, in order, with the same names and defaults; the published
  keyword-only parameters by name and default; ``*args``/``**kwargs`` where the published one has them. Ours
  may add keyword-only parameters (``timeout=``, ``config=``, ...) and ``**kwargs``, and may give a default to
  a parameter the published one requires (every published call still binds the same way). Annotations are not
  compared: ours name our own types.
- a record type: every published public field name is an attribute of ours (ours are attrs classes, the
  published ones pydantic models; pydantic's own members are out of scope).
- an enum: every published member, with its value; an exception: an Exception subclass; a name: it exists.
- a top-level name is also in our ``galileo.__all__`` (``galileo.middleware.__all__`` for the middleware).

A difference we keep on purpose is listed in :data:`KEPT` with its reason; any other difference fails.
``galileo.otel`` joins the list with the OpenTelemetry issue.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import attrs
import pytest

DATA = json.loads(Path(__file__).with_name("data").joinpath("published_api_2.7.0.json").read_text("utf-8"))
ENTRIES: dict[str, dict[str, Any]] = DATA["entries"]

# Differences kept on purpose: (entry, the start of the difference as reported below, or "" for any) -> why.
KEPT: dict[tuple[str, str], str] = {
    ("galileo.galileo_context.__exit__", ""): (
        "called by the with statement with three positional arguments: their names are not API"
    ),
    ("galileo.galileo_context.__call__", "'project': ours is positional"): (
        "ours also takes project and log_stream positionally (galileo_context('p', 's')), as it did before: "
        "a superset; every published call (keywords only) works unchanged"
    ),
    ("galileo.galileo_context.__call__", "'log_stream': ours is positional"): (
        "see 'project': positional as well as by keyword"
    ),
    ("galileo.middleware.TracingMiddleware", "'dispatch': ours is positional"): (
        "ours takes Starlette BaseHTTPMiddleware's optional dispatch= function after app, as its base class "
        "does; TracingMiddleware(app) and app.add_middleware(TracingMiddleware) work as published"
    ),
}


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_MISSING = object()


# --- the published side -------------------------------------------------------------------------------------


@attrs.frozen
class _Param:
    name: str
    kind: inspect._ParameterKind
    default: Any  # _MISSING when required

    def render(self) -> str:
        prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}.get(
            self.kind, ""
        )
        return f"{prefix}{self.name}" + ("" if self.default is _MISSING else f"={self.default!r}")


def _published_params(entry: dict[str, Any]) -> list[_Param]:
    params = []
    for p in entry["parameters"]:
        default = p["default"]
        value = _MISSING if default is None else default.get("value", default.get("repr"))
        params.append(_Param(p["name"], getattr(inspect.Parameter, p["kind"]), value))
    return params


def _our_params(sig: inspect.Signature) -> list[_Param]:
    return [
        _Param(p.name, p.kind, _MISSING if p.default is inspect.Parameter.empty else p.default)
        for p in sig.parameters.values()
    ]


def _render(params: list[_Param]) -> str:
    parts: list[str] = []
    star = False
    for i, p in enumerate(params):
        if p.kind == inspect.Parameter.KEYWORD_ONLY and not star:
            parts.append("*")
        star = star or p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_POSITIONAL)
        parts.append(p.render())
        if p.kind == inspect.Parameter.POSITIONAL_ONLY and (
            i + 1 == len(params) or params[i + 1].kind != inspect.Parameter.POSITIONAL_ONLY
        ):
            parts.append("/")
    return "(" + ", ".join(parts) + ")"


# --- our side -----------------------------------------------------------------------------------------------


def _resolve(entry: str) -> Any:
    """What ``entry`` (e.g. "galileo.middleware.TracingMiddleware") names here; AttributeError if nothing."""
    parts = entry.split(".")
    module = "galileo.middleware" if parts[1:2] == ["middleware"] else "galileo"
    obj: Any = importlib.import_module(module)
    for name in parts[len(module.split(".")) :]:
        obj = getattr(obj, name)
    return obj


def _our_signature(entry: str) -> inspect.Signature:
    """The signature a caller sees: without ``self`` for a method looked up on its class."""
    owner_name, _, name = entry.rpartition(".")
    owner = _resolve(owner_name)
    if isinstance(owner, type):
        member = inspect.getattr_static(owner, name)
        if isinstance(member, (staticmethod, classmethod)):
            return inspect.signature(getattr(owner, name))
        if isinstance(member, property):
            raise TypeError(f"{entry} is a property here, a method in the published SDK")
        sig = inspect.signature(member)
        return sig.replace(parameters=list(sig.parameters.values())[1:])
    return inspect.signature(getattr(owner, name))


def _signature_differences(published: list[_Param], ours: list[_Param]) -> list[str]:
    found: list[str] = []
    ours_by_name = {p.name: p for p in ours}
    pub_positional = [p for p in published if p.kind in _POSITIONAL]
    our_positional = [p for p in ours if p.kind in _POSITIONAL]
    for i, pub in enumerate(pub_positional):
        mine = our_positional[i] if i < len(our_positional) else None
        if mine is None or mine.name != pub.name:
            where = f"position {i + 1}"
            found.append(f"{where}: published {pub.name!r}, ours {repr(mine.name) if mine else 'nothing'}")
        elif pub.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD and mine.kind != pub.kind:
            found.append(f"{pub.name!r}: published positional-or-keyword, ours positional-only")
        elif pub.default is not _MISSING and mine.default != pub.default:
            found.append(f"{pub.name!r}: published default {pub.default!r}, ours {_shown(mine.default)}")
    for extra in our_positional[len(pub_positional) :]:
        found.append(
            f"{extra.name!r}: ours is positional, the published SDK has no such positional parameter"
        )
    for pub in published:
        if pub.kind == inspect.Parameter.KEYWORD_ONLY:
            mine = ours_by_name.get(pub.name)
            if mine is None or mine.kind not in (
                inspect.Parameter.KEYWORD_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            ):
                found.append(f"{pub.name!r}: published keyword-only, missing from ours")
            elif pub.default is not _MISSING and mine.default != pub.default:
                found.append(f"{pub.name!r}: published default {pub.default!r}, ours {_shown(mine.default)}")
        elif pub.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD) and not any(
            p.kind == pub.kind for p in ours
        ):
            found.append(f"{pub.render()}: published, missing from ours")
    published_names = {p.name for p in published}
    for mine in ours:
        if (
            mine.kind == inspect.Parameter.KEYWORD_ONLY
            and mine.default is _MISSING
            and mine.name not in published_names
        ):
            found.append(f"{mine.name!r}: ours is a required keyword-only parameter the published SDK lacks")
    return found


def _shown(default: Any) -> str:
    return "required" if default is _MISSING else repr(default)


def _our_attribute_names(obj: Any) -> set[str]:
    names = set(dir(obj))
    cls = obj if isinstance(obj, type) else type(obj)
    if attrs.has(cls):
        names |= {a.name for a in attrs.fields(cls)}
    for klass in cls.__mro__:
        names |= set(getattr(klass, "__annotations__", {}))
        names |= set(getattr(klass, "model_fields", {}) or {})
    return names


def _a_logger(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A logger built as the published docs build one; nothing is logged, so nothing is sent."""
    from galileo import GalileoLogger

    monkeypatch.setenv("GALILEO_API_URL", "http://127.0.0.1:9")
    return GalileoLogger(project="public-api", log_stream="public-api")


# --- the comparison -----------------------------------------------------------------------------------------


def _differences(entry: str, published: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    kind = published["kind"]
    parts = entry.split(".")
    if len(parts) == 2 or (parts[1] == "middleware" and len(parts) == 3):
        module = importlib.import_module(".".join(parts[:-1]))
        if parts[-1] not in getattr(module, "__all__", ()):
            return [f"{parts[-1]!r} is not in {module.__name__}.__all__"]
    if kind == "attributes":
        logger = _a_logger(monkeypatch)
        missing = sorted(set(published["attributes"]) - _our_attribute_names(logger))
        return [f"attribute {name!r} is missing" for name in missing]
    try:
        obj = _resolve(entry)
    except AttributeError:
        return ["missing"]
    if kind == "callable":
        try:
            sig = _our_signature(entry)
        except (TypeError, ValueError) as exc:
            return [f"no signature here: {exc}"]
        pub, ours = _published_params(published), _our_params(sig)
        found = _signature_differences(pub, ours)
        if found:
            found.insert(0, f"published {_render(pub)}\n  ours      {_render(ours)}")
        return found
    if kind == "record":
        if not isinstance(obj, type):
            return [f"not a class here: {obj!r}"]
        missing = sorted(set(published["fields"]) - _our_attribute_names(obj))
        return [f"field {name!r} is missing" for name in missing]
    if kind == "enum":
        if not (isinstance(obj, type) and issubclass(obj, enum.Enum)):
            return [f"not an Enum here: {obj!r}"]
        return [
            f"member {name} = {value!r}: ours {getattr(obj, name, None)!r}"
            for name, value in published["members"].items()
            if getattr(getattr(obj, name, None), "value", _MISSING) != value
        ]
    if kind == "exception":
        return [] if isinstance(obj, type) and issubclass(obj, Exception) else [f"not an exception: {obj!r}"]
    return []


def _not_kept(entry: str, found: list[str]) -> list[str]:
    kept = [start for (name, start) in KEPT if name == entry]
    left = [d for d in found if d == "missing" or not any(d.startswith(start) for start in kept)]
    signature_only = [d for d in left if d.startswith("published (")]
    return [] if left == signature_only else left


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_published_entry_is_ours(entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    found = _not_kept(entry, _differences(entry, ENTRIES[entry], monkeypatch))
    assert not found, f"{entry} differs from the published galileo 2.7.0:\n  " + "\n  ".join(found)


# --- the list itself stays sound (not in progress) ----------------------------------------------------------


def test_the_published_list_is_complete_and_sorted_out() -> None:
    assert DATA["source"]["galileo"] == "2.7.0"
    tracing, excluded = set(DATA["tracing_names"]), set(DATA["excluded_names"])
    assert not tracing & excluded
    assert len(tracing | excluded) == 108  # the published galileo.__all__
    named = {e.split(".")[1] for e in ENTRIES if e.count(".") == 1}
    assert named == tracing
    assert all(reason.strip() for reason in DATA["excluded_names"].values())


def test_kept_differences_name_published_entries() -> None:
    assert {entry for entry, _ in KEPT} <= set(ENTRIES)
    assert all(reason.strip() for reason in KEPT.values())


def test_the_comparison_finds_what_it_should() -> None:
    """The rules above on known cases, so a passing comparison means something."""

    def params(text: str) -> list[_Param]:
        namespace: dict[str, Any] = {}
        exec(f"def f{text}: pass", namespace)
        return _our_params(inspect.signature(namespace["f"]))

    published = params("(project=None, project_id=None, *, name=None)")
    assert (
        _signature_differences(published, params("(project=None, project_id=None, *, name=None, timeout=1)"))
        == []
    )
    assert (
        _signature_differences(published, params("(project=None, project_id=None, *, name=None, **kw)")) == []
    )
    assert _signature_differences(params("(input, model)"), params("(input, model=None)")) == []
    assert _signature_differences(published, params("(project=None, log_stream=None, *, name=None)"))
    assert _signature_differences(published, params("(project=None, *, project_id=None, name=None)"))
    assert _signature_differences(published, params("(project='x', project_id=None, *, name=None)"))
    assert _signature_differences(published, params("(project=None, project_id=None, x=None, *, name=None)"))
    assert _signature_differences(published, params("(project=None, project_id=None)"))
    assert _signature_differences(published, params("(project=None, project_id=None, *, name=None, must)"))
    assert _signature_differences(params("(*args, **kwargs)"), params("(**kwargs)"))
    assert _render(published) == "(project=None, project_id=None, *, name=None)"
