"""The Blender layer (bpy, never torch) and the add-on's registration framework.

Everything the add-on puts into Blender goes through here, so that ``unregister()`` can take all
of it out again: Blender keeps registered classes, app handlers and timers alive across add-on
disable/enable and script reloads, and a leftover would run stale code or block re-registration.

A submodule listed in ``SUBMODULES`` may define, all optional:

- ``classes``: a tuple of bpy classes; registered in order (after the submodules before it), and
  unregistered in reverse order.
- ``register()``: called after its classes are registered (e.g. to add ``PointerProperty`` on
  ``bpy.types.Scene``, or handlers through :func:`add_handler` / :func:`add_timer`).
- ``unregister()``: called before its classes are unregistered; undo what ``register()`` did.

Handlers and timers added through :func:`add_handler` / :func:`add_timer` are removed by the
framework even if a submodule forgets, and :func:`registered_classes` lists what is registered
(tests assert over it).

Operators annotate ``execute``/``invoke``/``modal`` as ``-> set[OperatorReturn]`` (imported from
here): it is the stubs' Literal under mypy and plain ``str`` at run time, so the override check
against ``bpy.types.Operator`` passes without quoting or ignores.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import bpy

if TYPE_CHECKING:
    # Stubs-only (fake-bpy-module): the Literal of what Operator.execute/invoke/modal may return.
    from bpy.stub_internal.rna_enums import OperatorReturnItems as OperatorReturn
else:
    OperatorReturn = str

log = logging.getLogger(__name__)

# Registration order; unregister runs in reverse. Add a submodule here and nowhere else.
SUBMODULES: tuple[str, ...] = ("preferences", "props", "ops", "ui")

_modules: list[ModuleType] = []
_classes: list[type] = []
_handlers: list[tuple[str, Callable[..., Any]]] = []
_timers: list[Callable[[], float | None]] = []


def registered_classes() -> tuple[type, ...]:
    """The bpy classes this add-on has registered, in registration order."""
    return tuple(_classes)


def add_handler(name: str, func: Callable[..., Any]) -> None:
    """Append ``func`` to ``bpy.app.handlers.<name>`` and remember it for ``unregister()``."""
    handlers = getattr(bpy.app.handlers, name)
    if func not in handlers:
        handlers.append(func)
    _handlers.append((name, func))


def add_timer(func: Callable[[], float | None], *, first_interval: float = 0.0, persistent: bool = False) -> None:
    """Register a ``bpy.app.timers`` callback that ``unregister()`` will remove if it still runs."""
    if not bpy.app.timers.is_registered(func):
        bpy.app.timers.register(func, first_interval=first_interval, persistent=persistent)
    _timers.append(func)


def register() -> None:
    """Register every submodule in ``SUBMODULES`` order; on failure undo what was done and re-raise."""
    if _modules or _classes:
        unregister()  # a re-register (script reload) must not double-register
    try:
        for name in SUBMODULES:
            module = importlib.import_module(f"{__name__}.{name}")
            _modules.append(module)
            for cls in getattr(module, "classes", ()):
                bpy.utils.register_class(cls)
                _classes.append(cls)
            hook = getattr(module, "register", None)
            if callable(hook):
                hook()
    except Exception:
        unregister()
        raise


def unregister() -> None:
    """Undo ``register()`` in reverse order. Safe to call twice, and after a partial register.

    Errors in one submodule are logged and do not stop the others from being cleaned up.
    """
    for name, func in reversed(_handlers):
        handlers = getattr(bpy.app.handlers, name)
        while func in handlers:
            handlers.remove(func)
    _handlers.clear()
    for func in reversed(_timers):
        if bpy.app.timers.is_registered(func):
            bpy.app.timers.unregister(func)
    _timers.clear()

    for module in reversed(_modules):
        hook = getattr(module, "unregister", None)
        if callable(hook):
            try:
                hook()
            except Exception:
                log.exception("unregister of %s failed", module.__name__)
        for cls in reversed(getattr(module, "classes", ())):
            if cls in _classes:
                _unregister_class(cls)
    # Classes of a module whose import or register() failed half-way.
    for cls in list(reversed(_classes)):
        _unregister_class(cls)
    _classes.clear()
    _modules.clear()


def _unregister_class(cls: type) -> None:
    if cls in _classes:
        _classes.remove(cls)
    if getattr(cls, "is_registered", False):
        try:
            bpy.utils.unregister_class(cls)
        except RuntimeError:
            log.exception("could not unregister %s", cls.__name__)
