"""The ipywidgets controls the activities are made of, sharing one layout and one style of each kind.

Every ipywidgets control brings a ``Layout`` and most a ``style`` of their own:
two more widget models each, which the kernel creates and announces, the
server passes on, and the browser builds, though none of them is ever changed
here. Session 1 made 238 widget models for its 88 controls. The controls
here share one empty ``Layout`` and one style of each kind instead. A control
whose layout does change (a part shown or hidden) is given its own, e.g.
``VBox(children, layout=Layout())``.

Use them as ``ipywidgets`` is used: ``from . import controls as widgets``.
"""

from __future__ import annotations

import ipywidgets
from ipywidgets import Layout, Widget
from traitlets import default

__all__ = ["Layout", "Widget", "HTML", "Button", "Textarea", "Checkbox", "RadioButtons", "Dropdown", "DatePicker", "VBox", "HBox"]

_SHARED: dict[type, Widget] = {}


def _one(kind: type) -> Widget:
    """The kernel's one shared instance of ``kind`` (made when first needed, so inside the kernel)."""
    found = _SHARED.get(kind)
    if found is None or found.comm is None:  # closed, or made before this process was a kernel
        found = _SHARED[kind] = kind()
    return found


def _sharing(control: type) -> type:
    """``control`` with the shared layout, and the shared style where it has one, as its defaults."""
    namespace = {"__doc__": control.__doc__, "__module__": __name__, "_layout_default": default("layout")(lambda self: _one(Layout))}
    style = control.class_traits().get("style")
    if style is not None:
        namespace["_style_default"] = default("style")(lambda self, kind=style.klass: _one(kind))
    return type(control.__name__, (control,), namespace)


HTML = _sharing(ipywidgets.HTML)
Button = _sharing(ipywidgets.Button)
Textarea = _sharing(ipywidgets.Textarea)
Checkbox = _sharing(ipywidgets.Checkbox)
RadioButtons = _sharing(ipywidgets.RadioButtons)
Dropdown = _sharing(ipywidgets.Dropdown)
DatePicker = _sharing(ipywidgets.DatePicker)
VBox = _sharing(ipywidgets.VBox)
HBox = _sharing(ipywidgets.HBox)
