"""Remote objects across Ray: they stay in the process that injected them.

A client that injects ``db`` with ``remote=True`` keeps ``db`` in its own
`RemoteRegistry` and sends the host actor a `Descriptor` (name, signature,
doc, public names). The host actor injects a *stand-in* built from it into
its `Runtime`, so the worker gets the same proxy as with a local runtime.
When a cell calls the proxy, the host's `Runtime` calls the stand-in, which
asks the request in flight to carry a `CallRequest` back to the client
(the reply to its Ray call); the client runs it with its own privileges and
sends the answer with its next Ray call. Results that cannot be copied stay
in the client too and come back as new stand-ins, as locally.

A stand-in belongs to the client that injected it (``owner``): a request
from another process cannot run it, and a client that has gone away never
answers, so the cell gets an exception after the runtime's deadline.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..runtime.injection import doc_of, is_remote_function
from ..runtime.registry import RemoteRegistry, describe_callable, is_copyable, public_names


@dataclass(frozen=True)
class ClientRef:
    """A client object by reference, as it crosses Ray (owner: the client's id)."""

    owner: str
    ref: int


@dataclass(frozen=True)
class Descriptor:
    """What a host needs to build a stand-in that looks like the client's object."""

    target: ClientRef
    function: bool
    name: str  # function name, or the object's type name
    doc: str
    signature: tuple[tuple[str, int, str | None, str | None], ...] | None  # (name, kind, default, annotation)
    returns: str | None
    is_async: bool
    attributes: tuple[str, ...]  # public names (objects)
    methods: tuple[Descriptor, ...]  # the callable ones, described (their target: the object)


@dataclass(frozen=True)
class CallRequest:
    """A stand-in's call, carried to the client: ``op`` is "call" or "getattr"."""

    target: ClientRef
    op: str
    name: str | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class CallAnswer:
    ok: bool
    value: Any = None  # a value, or a Descriptor for a result that stays in the client
    error_type: str = ""
    error: str = ""


class RemoteOwnerError(Exception):
    """The object's owner cannot serve this call (another process, or it went away)."""


# --- the client's side -----------------------------------------------------------------------


def _text(obj: Any) -> str:
    return obj if isinstance(obj, str) else inspect.formatannotation(obj)


def _signature(obj: Any) -> tuple[tuple[tuple[str, int, str | None, str | None], ...] | None,
                                  str | None]:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None, None
    params = tuple(
        (p.name, int(p.kind), None if p.default is p.empty else repr(p.default)[:200],
         None if p.annotation is p.empty else _text(p.annotation)[:200])
        for p in sig.parameters.values())
    returns = None if sig.return_annotation is sig.empty else _text(sig.return_annotation)[:200]
    return params, returns


class ClientRemotes:
    """The client's remote objects, and the serving of calls for them."""

    def __init__(self) -> None:
        self.owner = uuid.uuid4().hex
        self.registry = RemoteRegistry()
        self.types: dict[str, type] = {}  # classes this client injected: their instances copy

    def describe(self, obj: Any) -> Descriptor:
        target = ClientRef(self.owner, self.registry.register(obj))
        if is_remote_function(obj):
            name, doc, _sig, is_async = describe_callable(obj)
            params, returns = _signature(obj)
            return Descriptor(target, True, name, doc, params, returns, is_async, (), ())
        names = public_names(obj)
        methods = tuple(_method(target, n, m) for n in names
                        if callable(m := getattr(obj, n, None)) and not isinstance(m, type))
        return Descriptor(target, False, type(obj).__name__, doc_of(obj), None, None, False,
                          names, methods)

    def serve(self, request: CallRequest, loop: Any = None) -> CallAnswer:
        """Run one forwarded call here; its failure goes back to the cell as an exception."""
        try:
            if request.target.owner != self.owner:
                raise RemoteOwnerError("this remote object was injected by another process; only "
                                       "requests from that process can run it")
            args = _to_client(request.args, self)
            kwargs = _to_client(request.kwargs, self)
            result = self.registry.resolve(request.op, request.target.ref, request.name, args,
                                           kwargs, loop=loop)
            return CallAnswer(True, self._outgoing(result))
        except Exception as exc:
            return CallAnswer(False, None, type(exc).__name__, str(exc))

    def _outgoing(self, value: Any) -> Any:
        if is_copyable(value, tuple(self.types.values())):
            return value
        return self.describe(value)


def _method(target: ClientRef, attribute: str, method: Any) -> Descriptor:
    fname, doc, _sig, is_async = describe_callable(method)
    params, returns = _signature(method)
    return Descriptor(target, True, attribute, doc, params, returns, is_async, (), ())


def _to_client(value: Any, remotes: ClientRemotes) -> Any:
    if isinstance(value, ClientRef):
        if value.owner != remotes.owner or value.ref not in remotes.registry.objects:
            raise RemoteOwnerError("an argument refers to a remote object this process does not hold")
        return remotes.registry.objects[value.ref]
    if type(value) in (list, tuple, set, frozenset):
        return type(value)(_to_client(v, remotes) for v in value)
    if type(value) is dict:
        return {k: _to_client(v, remotes) for k, v in value.items()}
    return value


# --- the host actor's side -------------------------------------------------------------------

Ask = Callable[[CallRequest], CallAnswer]


class _Shown(str):
    """A default or annotation that prints as written."""

    def __repr__(self) -> str:
        return str(self)


def _rebuild_signature(desc: Descriptor) -> inspect.Signature | None:
    if desc.signature is None:
        return None
    try:
        params = [inspect.Parameter(
            name, inspect._ParameterKind(kind),
            default=inspect.Parameter.empty if default is None else _Shown(default),
            annotation=inspect.Parameter.empty if annotation is None else _Shown(annotation))
            for name, kind, default, annotation in desc.signature]
        returns = inspect.Signature.empty if desc.returns is None else _Shown(desc.returns)
        return inspect.Signature(params, return_annotation=returns)
    except (TypeError, ValueError):
        return None


class StandIn:
    """Base of the host actor's stand-ins for client objects (see `stand_in`)."""

    _cavelite_target: ClientRef


def _answer(answer: CallAnswer, ask: Ask) -> Any:
    if not answer.ok:
        raise type(answer.error_type or "RemoteError", (Exception,), {})(answer.error)
    value = answer.value
    return stand_in(value, ask) if isinstance(value, Descriptor) else value


def _to_host_refs(value: Any) -> Any:
    """Stand-ins in a call's arguments go back to their client as references."""
    if isinstance(value, StandIn):
        return value._cavelite_target
    if callable(value) and isinstance(getattr(value, "_cavelite_target", None), ClientRef):
        return value._cavelite_target
    if type(value) in (list, tuple, set, frozenset):
        return type(value)(_to_host_refs(v) for v in value)
    if type(value) is dict:
        return {k: _to_host_refs(v) for k, v in value.items()}
    return value


def stand_in(desc: Descriptor, ask: Ask) -> Any:
    """A host-side object that looks like the client's and forwards to it through ``ask``."""
    target = desc.target

    def forward(op: str, name: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        request = CallRequest(target, op, name, _to_host_refs(args), _to_host_refs(kwargs))
        return _answer(ask(request), ask)

    if desc.function:
        return _function(desc, lambda *a, **k: forward("call", None, a, k))

    methods = {m.name: m for m in desc.methods}
    bound: dict[str, Any] = {}

    def getattr_(self: Any, name: str) -> Any:
        if name.startswith("_") or name not in desc.attributes:
            raise AttributeError(name)
        method = methods.get(name)
        if method is None:
            return forward("getattr", name, (), {})
        if name not in bound:
            bound[name] = _function(method, lambda *a, **k: forward("call", name, a, k))
        return bound[name]

    cls = type(desc.name, (StandIn,), {
        "__getattr__": getattr_, "__dir__": lambda self: list(desc.attributes),
        "__doc__": desc.doc or None, "__module__": "cavelite.cluster.client",
    })
    obj = cls()
    object.__setattr__(obj, "_cavelite_target", target)
    return obj


def _function(desc: Descriptor, call: Callable[..., Any]) -> Any:
    async def coroutine(*args: Any, **kwargs: Any) -> Any:
        return call(*args, **kwargs)

    def plain(*args: Any, **kwargs: Any) -> Any:
        return call(*args, **kwargs)

    function: Any = coroutine if desc.is_async else plain  # an async tool stays awaitable in the cell
    function.__name__ = function.__qualname__ = desc.name
    function.__doc__ = desc.doc or None
    function.__signature__ = _rebuild_signature(desc) or inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
         inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])
    function._cavelite_target = desc.target  # type: ignore[attr-defined]
    return function
