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
import platform
import sys
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
# Third-party modules the add-on imports, bundled as wheels (blender_manifest.toml). Without them
# only the preferences register, and they show DEPENDENCY_PROBLEM instead of a failed registration.
REQUIRED_MODULES: tuple[str, ...] = ("pycocotools", "cv2")
DEPENDENCY_PROBLEM: str = ""

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


def dependency_problem() -> str:
    """One line saying why the bundled third-party modules do not import here, or ''."""
    for name in REQUIRED_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or an ABI error raised while loading the binary module
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return (f"{name} does not import in this Blender (Python {sys.version_info[0]}.{sys.version_info[1]}, "
                    f"{platform.system()} {platform.machine()}): {detail}. This build bundles wheels for Linux "
                    "x86-64 with Python 3.11 (Blender 4.2-5.0) and 3.13 (Blender 5.1-5.3); docs/extension.md "
                    "says how to build the zip for another platform")
    return ""


def register() -> None:
    """Register every submodule in ``SUBMODULES`` order; on failure undo what was done and re-raise.

    Without the bundled third-party modules only ``preferences`` registers, showing why.
    """
    global DEPENDENCY_PROBLEM
    if _modules or _classes:
        unregister()  # a re-register (script reload) must not double-register
    DEPENDENCY_PROBLEM = dependency_problem()
    if DEPENDENCY_PROBLEM:
        log.error("blender_instseg: %s", DEPENDENCY_PROBLEM)
    try:
        for name in SUBMODULES if not DEPENDENCY_PROBLEM else SUBMODULES[:1]:
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
