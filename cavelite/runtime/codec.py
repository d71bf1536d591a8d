"""How values cross the boundary: the picklers of both sides and the persistent-id vocabulary.

Four kinds of value travel, each with one encoder here and one decoder:

=====================  ===================  =========================================
value                  encoded by           decoded by
=====================  ===================  =========================================
injected (copied in)   host: `encode_for_worker`  worker: `decode_injected` (dill)
retrieved / call args  worker: `encode_for_host`  host: `decode_from_worker` (restricted)
remote-call results    host: `encode_call_result` worker: `decode_call_result`
=====================  ===================  =========================================

Objects that must not be copied travel as persistent ids, which all four
share (and `cavelite.security.decode` checks on the host side):

- ``("type", name)``: a class the host injected, by the name it was injected as;
- ``("remote", ref)``: a proxy the worker holds, naming host object ``ref``;
- ``("function", ref, name, doc, signature, is_async)`` and
  ``("object", ref, type_name, names)``: a host object a remote call returned,
  which the worker receives as a new proxy.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import sys
import types
from collections.abc import Callable
from typing import Any

from ..errors import UnpicklableValueError
from ..security import decode
from ..security.audit import library_roots
from .proxies import RemoteObject
from .registry import (
    VALUE,
    NotHandedOut,
    RemoteRegistry,
    copy_failed,
    describe_callable,
    is_copyable,
    public_names,
    returned_as,
)

TYPE = decode.TYPE_TAG
REMOTE = decode.REMOTE_TAG
FUNCTION = "function"
OBJECT = "object"

# Classes from these packages exist in the worker too, so they travel by name.
_BY_NAME_MODULES = frozenset(["builtins", "cavelite", "numpy", "pandas", "datetime", "decimal",
                              "fractions", "collections", "uuid"])
Encoded = tuple[bytes, list[Any]]


class CellMadeType(Exception):
    """A value holds a class defined by a cell: the host would have to run its code."""


def _type_names(types_: dict[str, type]) -> dict[int, str]:
    return {id(cls): name for name, cls in types_.items()}


# --- host -> worker: injected values ------------------------------------------------------------

def worker_importable(module_name: str | None) -> bool:
    """Whether the worker can import this module by name (stdlib, site-packages, cavelite)."""
    if not module_name or module_name == "__main__":
        return False
    top = module_name.split(".")[0]
    if top in sys.builtin_module_names or top == "cavelite":
        return True
    module = sys.modules.get(top)
    path = getattr(module, "__file__", None)
    if not path:
        return False
    real = os.path.realpath(path)
    return any(real.startswith(root + os.sep) for root in library_roots())


class _TypeRefPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, types_: dict[str, type], **kwargs: Any):
        super().__init__(file, protocol=5, **kwargs)
        self._type_names = _type_names(types_)

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, type):
            name = self._type_names.get(id(obj))
            if name is not None:
                return (TYPE, name)
        return None


@functools.lru_cache(maxsize=1)
def _by_value_pickler() -> type:
    import dill  # imported on first use: most sessions never send code by value

    class ByValuePickler(dill.Pickler):  # type: ignore[misc]
        """dill, but code from modules the worker cannot import travels by value."""

        def __init__(self, file: io.BytesIO, types_: dict[str, type], **kwargs: Any):
            super().__init__(file, protocol=5, recurse=True, **kwargs)
            self._type_names = _type_names(types_)
            self._top = True

        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, type) and not self._top:
                name = self._type_names.get(id(obj))
                if name is not None:
                    return (TYPE, name)
            self._top = False
            return None

        def save(self, obj: Any, save_persistent_id: bool = True) -> None:
            if isinstance(obj, (type, types.FunctionType)):
                module = getattr(obj, "__module__", None)
                if module and module != "__main__" and not worker_importable(module):
                    try:
                        obj.__module__ = "__main__"  # dill sends __main__ objects by value
                    except (AttributeError, TypeError):
                        super().save(obj, save_persistent_id)
                        return
                    try:
                        super().save(obj, save_persistent_id)
                    finally:
                        obj.__module__ = module
                    return
            super().save(obj, save_persistent_id)

    return ByValuePickler


def encode_for_worker(value: Any, types_: dict[str, type], *, by_value: bool) -> Encoded:
    """Pickle a value to copy into the worker (classes of ``types_`` by name)."""
    buffers: list[Any] = []
    if not by_value:
        try:
            bio = io.BytesIO()
            # persistent_id costs a Python call per object: only when there are types to map.
            pickler = (_TypeRefPickler(bio, types_, buffer_callback=buffers.append) if types_
                       else pickle.Pickler(bio, protocol=5, buffer_callback=buffers.append))
            pickler.dump(value)
            return bio.getvalue(), buffers
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            if "pickle" in str(exc) and ("lock" in str(exc) or "socket" in str(exc)):
                raise UnpicklableValueError(f"cannot copy this value into the cave: {exc}") from None
            buffers.clear()
    bio = io.BytesIO()
    try:
        _by_value_pickler()(bio, types_, buffer_callback=buffers.append).dump(value)
    except Exception as exc:
        raise UnpicklableValueError(f"cannot copy this value into the cave: {exc}") from None
    return bio.getvalue(), buffers


def decode_injected(payload: bytes, buffers: list[Any], types_: dict[str, type]) -> Any:
    """Worker side: rebuild a value the host injected (the host is trusted)."""
    import dill

    class _Injected(dill.Unpickler):  # type: ignore[misc]
        def persistent_load(self, pid: Any) -> Any:
            if type(pid) is tuple and len(pid) == 2 and pid[0] == TYPE and pid[1] in types_:
                return types_[pid[1]]
            raise pickle.UnpicklingError("unknown persistent reference in an injected value")

    return _Injected(io.BytesIO(payload), buffers=buffers).load()


# --- worker -> host: retrieved values and remote-call arguments ------------------------------------

class _ValuePickler(pickle.Pickler):
    """Pickles a value for the host: injected types and remote proxies by reference."""

    def __init__(self, file: io.BytesIO, types_: dict[str, type], **kwargs: Any):
        super().__init__(file, protocol=5, **kwargs)
        self.type_names = _type_names(types_)

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, type):
            name = self.type_names.get(id(obj))
            if name is not None:
                return (TYPE, name)
            if obj.__module__ == "__main__":
                raise CellMadeType(obj.__qualname__)
        elif type(obj) is RemoteObject:
            return (REMOTE, object.__getattribute__(obj, "_cave_ref"))
        return None


def encode_for_host(value: Any, types_: dict[str, type], *, trusted: bool) -> Encoded:
    """Worker side: pickle a value for the host's restricted decoder."""
    buffers: list[Any] = []
    if trusted:
        import dill

        return dill.dumps(value, protocol=5, recurse=True, buffer_callback=buffers.append), buffers
    if not types_:
        # Plain data (the common case) needs no persistent ids, whose per-object Python
        # call costs 5x on large containers. Remote proxies and cell-made classes make
        # the plain pickler fail; the slow path below then names them.
        try:
            return pickle.dumps(value, protocol=5, buffer_callback=buffers.append), buffers
        except (pickle.PicklingError, TypeError, AttributeError):
            buffers.clear()
    bio = io.BytesIO()
    _ValuePickler(bio, types_, buffer_callback=buffers.append).dump(value)
    return bio.getvalue(), buffers


def decode_from_worker(payload: bytes, buffers: list[Any], *, types_: dict[str, type],
                       refs: dict[int, Any], trusted: bool = False,
                       budget: int = decode.DEFAULT_BUDGET) -> Any:
    """Host side: the restricted decoder (see `cavelite.security.decode`).

    ``budget``: the host memory the decoded value may take (the transfer limit).
    """
    return decode.loads_value(payload, buffers, types=types_, refs=refs, trusted=trusted,
                              budget=budget)


# --- host -> worker: remote-call results ------------------------------------------------------------

class _HostPickler(pickle.Pickler):
    """Pickles remote-call results: non-copyable objects become remote references."""

    def __init__(self, file: io.BytesIO, registry: RemoteRegistry, types_: dict[str, type],
                 stdlib_target: bool, **kwargs: Any):
        super().__init__(file, protocol=5, **kwargs)
        self.registry = registry
        self.type_names = _type_names(types_)
        self.types = tuple(types_.values())
        self.stdlib_target = stdlib_target

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, type):
            name = self.type_names.get(id(obj))
            if name is not None:
                return (TYPE, name)
        if is_copyable(obj, self.types):
            return None
        if isinstance(obj, type) and (obj.__module__ or "").split(".")[0] in _BY_NAME_MODULES:
            return None
        if isinstance(obj, pickle.PickleBuffer) or _is_rebuild_function(obj):
            return None  # an array's data (out of band), or numpy's/pandas' rebuild functions
        if returned_as(obj, self.types, stdlib_target=self.stdlib_target) == VALUE:
            return None  # a standard-library value: copied into the cave
        ref = self.registry.register(obj)
        if callable(obj):
            name, doc, signature, is_async = describe_callable(obj)
            return (FUNCTION, ref, name, doc, signature, is_async)
        return (OBJECT, ref, type(obj).__name__, public_names(obj))


# Pickled numpy and pandas values name their rebuild functions (numpy's _reconstruct,
# pandas' _unpickle_block, copyreg's _reconstructor); those travel by name too, or the
# worker would call back into the host for every block of a returned DataFrame.
_REBUILD_MODULES = frozenset(["numpy", "pandas", "pyarrow", "copyreg"])


def _is_rebuild_function(obj: Any) -> bool:
    """A module-level numpy/pandas/copyreg function, which pickle saves as a global name."""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or module.split(".")[0] not in _REBUILD_MODULES or isinstance(obj, type):
        return False
    owner = sys.modules.get(module)
    return owner is not None and getattr(owner, getattr(obj, "__name__", ""), None) is obj


def encode_call_result(result: Any, registry: RemoteRegistry, types_: dict[str, type], *,
                       stdlib_target: bool = False) -> Encoded:
    """Host side: a remote call's result, values copied and host objects by reference (see
    `registry.returned_as`; ``stdlib_target``: the callee is a standard-library object the
    host handed out)."""
    bio = io.BytesIO()
    buffers: list[Any] = []
    first_new = registry.next_ref
    try:
        _HostPickler(bio, registry, types_, stdlib_target,
                     buffer_callback=buffers.append).dump(result)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        registry.forget_since(first_new)  # references the worker will never hear of
        if isinstance(exc, NotHandedOut):
            raise
        raise copy_failed(exc) from None
    except BaseException:
        registry.forget_since(first_new)
        raise
    return bio.getvalue(), buffers


ProxyFactory = Callable[[tuple[Any, ...]], Any]


class _ResultUnpickler(pickle.Unpickler):
    """Worker side: host objects in a call result become proxies; injected types by name."""

    def __init__(self, file: io.BytesIO, buffers: list[Any], types_: dict[str, type],
                 new_proxy: ProxyFactory):
        super().__init__(file, buffers=buffers)
        self._types = types_
        self._new_proxy = new_proxy

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is tuple and pid:
            if pid[0] == TYPE and len(pid) == 2 and pid[1] in self._types:
                return self._types[pid[1]]
            if pid[0] in (FUNCTION, OBJECT):
                return self._new_proxy(pid)
        raise pickle.UnpicklingError("unknown persistent reference in a call result")


def decode_call_result(payload: bytes, buffers: list[Any], types_: dict[str, type],
                       new_proxy: ProxyFactory) -> Any:
    """Worker side: ``new_proxy`` turns a function/object id into a tracked proxy."""
    return _ResultUnpickler(io.BytesIO(payload), buffers, types_, new_proxy).load()
