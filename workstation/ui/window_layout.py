"""How the main window's parts sit together once every dock is installed: dock placement, menu order,
annotation tools beside the measurement tools, and the layout remembered from the last run.

The docks come from several controllers (studies, AI findings, Annotate, Sync); each adds its own.  This
module arranges them in one place, so a reader of the screen gets: studies on the left, the image in the
middle, the reading panels (AI findings, Annotate) tabbed on the right, the sync queue at the bottom.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFrame, QMainWindow, QMenu, QScrollArea, QTabBar, QTabWidget

from workstation.labels.schema import Tool as LabelTool
from workstation.ui.annotation_panel import TOOL_TITLES

STATE_VERSION = 1  # bump when the set of docks changes so an old saved layout is not applied
ANNOTATION_KEYS = {LabelTool.BRUSH: "B", LabelTool.ERASER: "X"}  # letters no view or tool uses


def scrollable(dock: QDockWidget) -> None:
    """Put the dock's panel in a scroll area: a tall panel then scrolls instead of stretching the window
    past the screen."""
    panel = dock.widget()
    if panel is None or isinstance(panel, QScrollArea):
        return
    area = QScrollArea()
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # the panel sets the dock's width
    area.setWidget(panel)
    area.setMinimumWidth(panel.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width() + 4)
    dock.setWidget(area)


def arrange_docks(window: QMainWindow, studies: QDockWidget, right: list[QDockWidget],
                  bottom: list[QDockWidget]) -> None:
    """Studies left; the reading panels tabbed together on the right; the rest at the bottom, tabbed."""
    window.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, studies)
    for group, area in ((right, Qt.DockWidgetArea.RightDockWidgetArea),
                        (bottom, Qt.DockWidgetArea.BottomDockWidgetArea)):
        for n, dock in enumerate(group):
            window.addDockWidget(area, dock)
            if n:
                window.tabifyDockWidget(group[0], dock)
    window.setTabPosition(Qt.DockWidgetArea.RightDockWidgetArea, QTabWidget.TabPosition.North)
    for dock in bottom:  # a short strip under the image the first time it opens, not half the screen
        _first_show_height(window, dock, 170)
    hide_spare_tab_bars(window)


def hide_spare_tab_bars(window: QMainWindow) -> None:
    """Hide the dock tab bars Qt keeps spare (no tabs).  Tabifying and restoreState leave one shown: at the
    window's top-left corner after a restored layout, 100 x 30 px over the File and View menus and the first
    toolbar button.  Qt shows a bar again when it puts tabs on it."""
    for bar in window.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly):
        if bar.count() == 0:
            bar.hide()


def _first_show_height(window: QMainWindow, dock: QDockWidget, height: int) -> None:
    def shown(visible: bool) -> None:
        if visible and not getattr(window, "layout_restored", False):
            window.resizeDocks([dock], [height], Qt.Orientation.Vertical)
        dock.visibilityChanged.disconnect(shown)

    dock.visibilityChanged.connect(shown)


def fill_panels_menu(menu: QMenu, docks: list[QDockWidget]) -> None:
    """One checkable entry per dock (its own toggle action), so a closed panel can always be brought back."""
    for dock in docks:
        menu.addAction(dock.toggleViewAction())


def order_menus(window: QMainWindow, order: list[str]) -> None:
    """Put the menu bar's menus in ``order`` (titles without '&'); menus not named follow, as they were."""
    bar = window.menuBar()
    by_title = {a.text().replace("&", ""): a for a in bar.actions()}
    named = [by_title[t] for t in order if t in by_title]
    for a in named:
        bar.removeAction(a)
    rest = bar.actions()
    for a in named:
        bar.insertAction(rest[0] if rest else None, a)


def add_annotation_tools(window, controller, tools_menu: QMenu, group: QActionGroup) -> dict:
    """The annotation mouse tools in the Tools menu, after the measurement tools and in the same exclusive
    group: one tool is active at a time, whichever menu or panel picked it."""
    tools_menu.addSection("Annotation")
    actions: dict[LabelTool, QAction] = {}
    for tool, title in TOOL_TITLES.items():
        a = QAction(title, window)
        a.setCheckable(True)
        key = ANNOTATION_KEYS.get(tool)
        if key:
            a.setShortcut(QKeySequence(key))
        a.triggered.connect(lambda _=False, t=tool: _pick(window, controller, t))
        group.addAction(a)
        tools_menu.addAction(a)
        window.addAction(a)
        actions[tool] = a
    controller.panel.tool_changed.connect(lambda t: actions[t].setChecked(True) if t in actions else None)
    return actions


def _pick(window, controller, tool: LabelTool) -> None:
    button = controller.panel.tool_buttons.get(tool)
    if button is not None and not button.isEnabled():
        window.show_status(f"Annotate: {TOOL_TITLES[tool]} is not used for this label in the schema")
    else:
        controller.show()
        controller.set_tool(tool)
    session = controller.session
    if session is None or session.tool is not tool:  # not started (no series open): keep the current tool
        window.tool_actions[window.current_tool].setChecked(True)


def _keep_on_screen(window: QMainWindow) -> None:
    """A saved position from another screen set-up (or a display without a window manager) can leave the
    menu bar off the edge: move the window's top-left corner back onto the available screen."""
    screen = window.screen()
    if screen is None:
        return
    area, frame = screen.availableGeometry(), window.frameGeometry()
    if not area.contains(frame.topLeft()):
        window.move(max(frame.x(), area.x()), max(frame.y(), area.y()))


class LayoutMemory:
    """The window geometry and dock layout, kept in an INI file under the workstation home."""

    def __init__(self, path: Path) -> None:
        self.settings = QSettings(str(path), QSettings.Format.IniFormat)

    def restore(self, window: QMainWindow) -> bool:
        if self.settings.value("layout/version", 0, type=int) != STATE_VERSION:
            return False
        geometry, state = self.settings.value("layout/geometry"), self.settings.value("layout/state")
        if geometry is not None:
            window.restoreGeometry(geometry)
            _keep_on_screen(window)
        window.layout_restored = bool(state is not None and window.restoreState(state, STATE_VERSION))
        hide_spare_tab_bars(window)
        return window.layout_restored

    def save(self, window: QMainWindow) -> None:
        self.settings.setValue("layout/version", STATE_VERSION)
        self.settings.setValue("layout/geometry", window.saveGeometry())
        self.settings.setValue("layout/state", window.saveState(STATE_VERSION))
        self.settings.sync()
