"""The "Annotate" dock: label schema, instructions, segments, tools, brush size, attributes, actions.

The panel only shows and collects; :class:`~workstation.ui.annotation_controller.AnnotationController`
connects its widgets to the annotation session.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QPushButton, QToolButton, QVBoxLayout, QWidget)

from workstation.labels.schema import AttributeKind, AttributeSpec, LabelSchema, Tool, available_schemas
from workstation.ui.annotation_sets_ui import AnnotationSetsBox
from workstation.ui.qt_compat import emit

TOOL_TITLES = {Tool.BRUSH: "Brush", Tool.ERASER: "Eraser", Tool.HU_BRUSH: "Threshold brush",
               Tool.REGION_GROW: "Region grow", Tool.POLYGON: "Polygon", Tool.FREEHAND: "Freehand",
               Tool.BOX_2D: "Box 2D", Tool.BOX_3D: "Box 3D", Tool.POINT: "Point"}
ACTION_TITLES = {Tool.INTERPOLATE: "Interpolate", Tool.SMOOTH: "Smooth", Tool.REMOVE_ISLANDS: "Remove islands",
                 Tool.FROM_AI: "Start from AI result"}


class AnnotationPanel(QWidget):
    schema_requested = Signal(str)  # a shipped schema name
    schema_file_requested = Signal()
    segment_changed = Signal(int)
    tool_changed = Signal(object)  # Tool
    action_requested = Signal(object)  # Tool (interpolate, smooth, remove islands, from AI)
    attribute_changed = Signal(str, object)  # key, value (None: unset)
    settings_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.schema_box = QComboBox()
        self.schema_box.addItems(available_schemas())
        self.schema_box.currentTextChanged.connect(lambda name: emit(self.schema_requested, name))
        self.schema_file = QToolButton()
        self.schema_file.setText("File...")
        self.schema_file.clicked.connect(lambda: emit(self.schema_file_requested))
        self.annotator = QLineEdit()
        self.annotator.setPlaceholderText("your name")
        self.instructions = QLabel()
        self.instructions.setWordWrap(True)
        self.instructions.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.segments = QListWidget()
        self.segments.setMaximumHeight(90)
        self.segments.currentRowChanged.connect(self._on_segment_row)
        self.sets_box = AnnotationSetsBox()
        self.start_button = QPushButton("Start annotating this series")
        self.restore_bar = QWidget()
        self.restore_text = QLabel()
        self.restore_text.setWordWrap(True)
        self.restore_button = QPushButton("Restore")
        self.discard_button = QPushButton("Discard")
        bar = QHBoxLayout(self.restore_bar)
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.restore_text, 1)
        bar.addWidget(self.restore_button)
        bar.addWidget(self.discard_button)
        self.restore_bar.hide()
        self._build_tools()
        self._build_settings()
        self.attributes_box = QGroupBox("Finding attributes")
        self.attributes_form = QFormLayout(self.attributes_box)
        self.attribute_widgets: dict[str, QWidget] = {}
        self.missing = QLabel()
        self.missing.setWordWrap(True)
        self.undo_button, self.redo_button = QPushButton("Undo"), QPushButton("Redo")
        self.save_button = QPushButton("Save revision (SEG + SR, sent to the archive)")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self._layout()
        self.schema: LabelSchema | None = None

    def _build_tools(self) -> None:
        self.tool_group = QButtonGroup(self)
        self.tool_group.setExclusive(True)
        self.tool_buttons: dict[Tool, QToolButton] = {}
        for tool, title in TOOL_TITLES.items():
            b = QToolButton()
            b.setText(title)
            b.setCheckable(True)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            b.clicked.connect(lambda _=False, t=tool: emit(self.tool_changed, t))
            self.tool_group.addButton(b)
            self.tool_buttons[tool] = b
        self.action_buttons: dict[Tool, QPushButton] = {}
        for tool, title in ACTION_TITLES.items():
            b = QPushButton(title)
            b.clicked.connect(lambda _=False, t=tool: emit(self.action_requested, t))
            self.action_buttons[tool] = b

    def _build_settings(self) -> None:
        self.brush_mm = QDoubleSpinBox()
        self.brush_mm.setRange(0.25, 50.0)
        self.brush_mm.setSingleStep(0.5)
        self.brush_mm.setValue(3.0)
        self.brush_mm.setSuffix(" mm")
        self.sphere = QCheckBox("3D (sphere / grow in 3D)")
        self.hu_low, self.hu_high = QDoubleSpinBox(), QDoubleSpinBox()
        for box, value in ((self.hu_low, -1000.0), (self.hu_high, 400.0)):
            box.setRange(-4000.0, 4000.0)
            box.setDecimals(0)
            box.setValue(value)
        for w in (self.brush_mm, self.hu_low, self.hu_high):
            w.valueChanged.connect(lambda _=0: emit(self.settings_changed))
        self.sphere.toggled.connect(lambda _=False: emit(self.settings_changed))
        # the labels' edges only, so the anatomy under them stays in view while painting along it
        self.outline = QCheckBox("Outline labels (edges only)")
        self.outline.setObjectName("annotation_outline")

    def _layout(self) -> None:
        col = QVBoxLayout(self)
        head = QHBoxLayout()
        head.addWidget(QLabel("Schema"))
        head.addWidget(self.schema_box, 1)
        head.addWidget(self.schema_file)
        col.addLayout(head)
        who = QHBoxLayout()
        who.addWidget(QLabel("Annotator"))
        who.addWidget(self.annotator, 1)
        col.addLayout(who)
        col.addWidget(self.sets_box)
        col.addWidget(self.instructions)
        col.addWidget(self.segments)
        col.addWidget(self.start_button)
        col.addWidget(self.restore_bar)
        grid = QGridLayout()
        for n, b in enumerate(self.tool_buttons.values()):
            grid.addWidget(b, n // 3, n % 3)
        col.addLayout(grid)
        form = QFormLayout()
        form.addRow("Brush size", self.brush_mm)
        hu = QHBoxLayout()
        hu.addWidget(self.hu_low)
        hu.addWidget(QLabel("to"))
        hu.addWidget(self.hu_high)
        form.addRow("HU range", hu)
        form.addRow(self.sphere)
        form.addRow(self.outline)
        col.addLayout(form)
        actions = QGridLayout()
        for n, b in enumerate([*self.action_buttons.values(), self.undo_button, self.redo_button]):
            actions.addWidget(b, n // 2, n % 2)
        col.addLayout(actions)
        col.addWidget(self.attributes_box)
        col.addWidget(self.missing)
        col.addWidget(self.save_button)
        col.addWidget(self.status)
        col.addStretch(1)

    # -- content ----------------------------------------------------------------------------------------
    def show_schema(self, schema: LabelSchema) -> None:
        self.schema = schema
        self.instructions.setText(schema.instructions or schema.title)
        self.segments.blockSignals(True)
        self.segments.clear()
        for s in schema.segments:
            pix = QPixmap(12, 12)
            pix.fill(QColor(*s.segment.colour))
            item = QListWidgetItem(QIcon(pix), f"{s.segment.number}  {s.segment.name}")
            item.setData(Qt.ItemDataRole.UserRole, s.segment.number)
            self.segments.addItem(item)
        self.segments.blockSignals(False)
        self.segments.setCurrentRow(0)
        self._on_segment_row(0)

    def _on_segment_row(self, row: int) -> None:
        if self.schema is None or row < 0:
            return
        entry = self.schema.segments[row]
        for tool, b in self.tool_buttons.items():
            b.setEnabled(tool in entry.tools)
        for tool, b in self.action_buttons.items():
            b.setEnabled(tool in entry.tools)
        emit(self.segment_changed, entry.segment.number)

    def current_segment(self) -> int | None:
        item = self.segments.currentItem()
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    def select_tool(self, tool: Tool) -> None:
        b = self.tool_buttons.get(tool)
        if b is not None:
            b.setChecked(True)

    def show_attributes(self, specs: list[AttributeSpec], values: dict[str, object]) -> None:
        """One widget per attribute of the active segment, filled with ``values``."""
        while self.attributes_form.rowCount():
            self.attributes_form.removeRow(0)
        self.attribute_widgets = {}
        for spec in specs:
            w = _attribute_widget(spec, values.get(spec.key))
            if isinstance(w, QComboBox):
                w.currentIndexChanged.connect(lambda _=0, s=spec, box=w: emit(self.attribute_changed, s.key,
                                                                             box.currentData()))
            else:
                w.editingFinished.connect(lambda s=spec, e=w: emit(self.attribute_changed, s.key, e.text() or None))
            self.attribute_widgets[spec.key] = w
            self.attributes_form.addRow(spec.title + (" *" if spec.required else ""), w)
        self.attributes_box.setVisible(bool(specs))

    def show_missing(self, missing: list[str]) -> None:
        self.missing.setText("Still to set: " + ", ".join(missing) if missing else "")


def _attribute_widget(spec: AttributeSpec, value: object) -> QWidget:
    if spec.kind is AttributeKind.TEXT:
        edit = QLineEdit("" if value is None else str(value))
        return edit
    box = QComboBox()
    box.addItem("\u2014", None)
    if spec.kind is AttributeKind.CHOICE:
        for c in spec.choices:
            box.addItem(c, c)
    else:
        for n in range(spec.minimum, spec.maximum + 1):
            label = spec.labels[n - spec.minimum] if spec.labels else ""
            box.addItem(f"{n} {label}".strip(), n)
    index = box.findData(value) if value is not None else 0
    box.setCurrentIndex(max(index, 0))
    return box
