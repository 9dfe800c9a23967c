"""ipywidgets for the notebooks: the knob panel (sliders bound to the one config) and the chat box.

The panel shows every knob declared with `panel=True` (config.py, and each augmentation kind's own
knobs), built from the knob's metadata: its range, log scale and help line. A knob declared so appears
here, as it appears in the CLI and in YAML, without further code; SLIDER_LIMITS and LABELS below only
narrow a slider's travel or shorten a label.
"""

from __future__ import annotations

import dataclasses
import html
import math
from pathlib import Path

from ..config import AugmentConfig, Config, config_dict, load_config, panel_keys, replace, save_config

# Slider ends where the config's hard range is wider than anyone would slide through. A value outside
# them (from YAML or code) widens the slider rather than being clamped.
SLIDER_LIMITS = {"per_device_train_batch_size": (1, 64), "gradient_accumulation_steps": (1, 32),
                 "num_train_epochs": (0.5, 30.0), "lora_r": (1, 128), "lora_alpha": (1, 256),
                 "max_seq_length": (64, 4096), "evals_per_epoch": (0.5, 10), "early_stopping_patience": (0, 10),
                 "weight_decay": (0.0, 0.2), "augment.rephrasings": (0, 10), "augment.replay": (0, 500),
                 "max_train_minutes": (0, 120)}
# warmup below 1 is a share of the steps, 1 or more a number of steps: one slider, two scales.
WARMUP_SCALES = {"ratio": (0.0, 0.5, 0.01, 0.05), "steps": (1.0, 500.0, 1.0, 10.0)}  # lo, hi, step, default
LORA_KNOBS = {"lora_r", "lora_alpha", "lora_dropout"}
LABELS = {"per_device_train_batch_size": "batch size", "gradient_accumulation_steps": "gradient accumulation",
          "max_train_minutes": "max train minutes"}
# Log sliders move in steps of 1/100 decade and show (and keep) 2 significant digits: 2.0e-4, 2.1e-4, ...
LOG_STEP, LOG_FORMAT, LOG_DIGITS = 0.01, ".1e", 2
LABEL_WIDTH = "170px"
SLIDER_WIDTH = "460px"


def _field(key: str):
    cls, name = (AugmentConfig, key.split(".", 1)[1]) if key.startswith("augment.") else (Config, key)
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def _type(f) -> str:
    return f.type if isinstance(f.type, str) else f.type.__name__


def _help(f) -> str:
    m = f.metadata
    return m["help"] + (f" Overfitting: {m['overfit']}." if m.get("overfit") else "")


def _clean(widget, value):
    """Slider floats arrive with binary noise (0.30000000000000004, 10**-3.65 = 0.000223872...): keep 6 significant
    digits, never a fixed number of decimals (that would flatten small learning rates). A log slider's own
    positions keep the digits its readout shows; a value typed into the readout is kept as typed."""
    if not isinstance(value, float):
        return value
    if getattr(widget, "base", None) and value > 0:  # FloatLogSlider
        k = (math.log(value, widget.base) - widget.min) / widget.step
        if abs(k - round(k)) < 1e-6:
            return float(f"{value:.{LOG_DIGITS}g}")
    return float(f"{value:.6g}")


def _set_slider(widget, value, lo=None, hi=None, step=None):
    """Set value (and optionally range and step) without the slider clamping the value on the way:
    widen the range first, then set the value, then narrow it to the wanted ends (never past the value)."""
    import ipywidgets as w

    if isinstance(widget, w.FloatLogSlider):  # min and max are exponents
        value_end = math.log10(value)
    else:
        value_end = value
    lo = widget.min if lo is None else lo
    hi = widget.max if hi is None else hi
    with widget.hold_sync():
        widget.max = max(widget.max, hi, value_end)
        widget.min = min(widget.min, lo, value_end)
        if step is not None:
            widget.step = step
        widget.value = value
        widget.min, widget.max = min(lo, value_end), max(hi, value_end)


def _widget_for(key: str, value):
    import ipywidgets as w

    f = _field(key)
    m = f.metadata
    name = key.split(".")[-1]
    label = ("augment " if key.startswith("augment.") else "") + LABELS.get(name, name).replace("_", " ")
    style = {"description_width": LABEL_WIDTH}
    layout = w.Layout(width=SLIDER_WIDTH)
    t = _type(f)
    if m.get("choices"):
        widget = w.Dropdown(options=list(m["choices"]), value=value, description=label, style=style, layout=layout)
    elif t == "bool":
        widget = w.Checkbox(value=value, description=label, style=style, layout=layout)
    elif m.get("log"):
        lo, hi = math.log10(m["lo"]), math.log10(m["hi"])
        exp = math.log10(value)
        widget = w.FloatLogSlider(value=value, base=10, min=min(lo, exp), max=max(hi, exp), step=LOG_STEP,
                                  description=label, readout_format=LOG_FORMAT, style=style, layout=layout)
    elif key == "warmup":
        lo, hi, step, _ = WARMUP_SCALES["steps" if value >= 1 else "ratio"]
        widget = w.FloatSlider(value=value, min=min(lo, value), max=max(hi, value), step=step, description=label,
                               style=style, layout=layout, readout_format=".4")
    else:
        lo, hi = _default_range(key)
        cls = w.IntSlider if t == "int" else w.FloatSlider
        extra = {} if t == "int" else {"readout_format": ".3"}
        step = m.get("step") or (1 if t == "int" else 0.01)
        widget = cls(value=value, min=min(lo, value), max=max(hi, value), step=step, description=label, style=style,
                     layout=layout, **extra)
    if hasattr(widget, "continuous_update"):
        # Send a slider's value on release (or key press), not on every frontend update: the frontend snaps a
        # value set from Python (Load, set()) to its step grid and, with continuous updates, would send that back.
        widget.continuous_update = False
    help_text = _help(f)
    widget.tooltip = help_text  # shown on hovering a slider's label (dropdowns, checkboxes: the help line's)
    widget.add_class("knob-" + key.replace(".", "-"))
    return widget, help_text


def _default_range(key: str):
    """The slider ends a fresh panel starts with (None for knobs that are not plain sliders)."""
    m = _field(key).metadata
    if key == "warmup" or m.get("choices") or m.get("lo") is None:
        return None
    if m.get("log"):
        return math.log10(m["lo"]), math.log10(m["hi"])
    return SLIDER_LIMITS.get(key, (m["lo"], m["hi"]))


class ConfigPanel:
    """Sliders for the training knobs (and the main augmentation counts), bound to one Config: `panel.config`
    is always the validated current value. Save/Load write and read YAML.

    In a notebook: `panel = ConfigPanel(cfg); panel`; from code: `panel.set(lora_r=32, augment={"replay": 50})`.
    """

    def __init__(self, cfg: Config, yaml_path: str | Path = "config.yaml"):
        import ipywidgets as w

        self._cfg = cfg
        self._quiet = False  # True while the panel itself moves widgets (Load, warm-up scale switch)
        self.widgets = {}
        values = self._values(cfg)
        rows = []
        for key in self._keys():
            widget, help_text = _widget_for(key, values[key])
            widget.observe(self._changed(key), names="value")
            self.widgets[key] = widget
            hint = " (applies to a new adapter)" if key in LORA_KNOBS else ""
            extra = []
            if key == "warmup":
                self.warmup_scale = w.ToggleButtons(options=["ratio", "steps"],
                                                    value="steps" if values[key] >= 1 else "ratio",
                                                    tooltips=["a share of all optimizer steps", "a number of steps"],
                                                    style={"button_width": "52px"},
                                                    layout=w.Layout(width="auto", flex="0 0 auto", display="flex",
                                                                    flex_flow="row nowrap"))
                self.warmup_scale.add_class("knob-warmup-scale")
                self.warmup_scale.observe(self._warmup_scale_changed, names="value")
                extra = [self.warmup_scale]
                hint = " Toggle: ratio (a share of all steps) or steps (a number)."
            if key == "augment.enabled":
                rows.append(w.HTML("<b>Augmentation</b> <span style='color:#666;font-size:90%'>(cfg.augment: "
                                   "training writes the augmented file again when these change)</span>"))
            text = html.escape(help_text)
            rows.append(w.HBox([widget, *extra, w.HTML(
                f"<span style='color:#666;font-size:90%' title=\"{text}\">{text}{html.escape(hint)}</span>",
                layout=w.Layout(width="560px" if not extra else "420px"))],
                layout=w.Layout(flex_flow="row nowrap", align_items="center")))
            if key == "gradient_accumulation_steps":
                self.effective = w.HTML(layout=w.Layout(margin="0 0 0 178px"))
                self.effective.add_class("knob-effective-batch")
                rows.append(self.effective)
        self.status = w.HTML()
        self.status.add_class("knob-status")
        self.path = w.Text(value=str(yaml_path), description="YAML file", layout=w.Layout(width=SLIDER_WIDTH),
                           style={"description_width": LABEL_WIDTH})
        self.path.add_class("knob-path")
        save = w.Button(description="Save", icon="save", tooltip="Write every knob to the YAML file")
        load = w.Button(description="Load", icon="folder-open", tooltip="Read knobs from the YAML file")
        save.add_class("knob-save")
        load.add_class("knob-load")
        save.on_click(lambda _: self._report(self.save))
        load.on_click(lambda _: self._report(self.load))
        self._update_effective()
        self.box = w.VBox([w.HTML("<b>Training knobs</b>"), *rows, w.HBox([self.path, save, load]), self.status])
        self.box.add_class("unslothify-config-panel")

    @property
    def config(self) -> Config:
        return self._cfg

    @staticmethod
    def _keys():
        return panel_keys()

    @classmethod
    def _values(cls, cfg: Config) -> dict:
        d = config_dict(cfg)
        return {k: (d["augment"][k.split(".", 1)[1]] if k.startswith("augment.") else d[k]) for k in cls._keys()}

    def _apply(self, key, value):
        """Validate one knob into a new config; a bad value leaves the config as it was and says why."""
        change = {"augment": {key.split(".", 1)[1]: value}} if key.startswith("augment.") else {key: value}
        try:
            self._cfg = replace(self._cfg, **change)
            self.status.value = ""
        except ValueError as e:
            self.status.value = f"<span style='color:#c0392b'>{html.escape(str(e))}</span>"
        self._update_effective()

    def _changed(self, key):
        def on_change(change):
            if not self._quiet:
                self._apply(key, _clean(change["owner"], change["new"]))
        return on_change

    def _quietly(self, action, *args):
        self._quiet, was = True, self._quiet
        try:
            action(*args)
        finally:
            self._quiet = was

    def _show_warmup(self, value):
        """Put the warm-up slider on the scale that value belongs to (ratio below 1, else steps)."""
        scale = "steps" if value >= 1 else "ratio"
        lo, hi, step, _ = WARMUP_SCALES[scale]
        self.warmup_scale.value = scale
        _set_slider(self.widgets["warmup"], value, lo, hi, step)

    def _warmup_scale_changed(self, change):
        if self._quiet:
            return
        default = WARMUP_SCALES[change["new"]][3]
        self._quietly(self._show_warmup, default)
        self._apply("warmup", default)

    def _update_effective(self):
        c = self._cfg
        self.effective.value = (f"Effective batch: {c.per_device_train_batch_size} x {c.gradient_accumulation_steps} "
                                f"= <b>{c.per_device_train_batch_size * c.gradient_accumulation_steps}</b> items per "
                                f"optimizer step (larger: fewer, smoother updates per epoch, less overfitting).")

    def _show(self, cfg: Config):
        """Move every widget to cfg's values without treating the moves as edits."""
        values = self._values(cfg)

        def move():
            for key, widget in self.widgets.items():
                if key == "warmup":
                    self._show_warmup(values[key])
                elif hasattr(widget, "min"):  # back to the usual ends unless the value lies outside them
                    _set_slider(widget, values[key], *_default_range(key))
                else:
                    widget.value = values[key]
        self._quietly(move)
        self._cfg = cfg
        self._update_effective()

    def set(self, **values):
        """Change knobs from code: `panel.set(lora_r=32, warmup=20, augment={"replay": 50})`. The values are
        validated together (a bad one raises ConfigError and changes nothing); the widgets follow."""
        self._show(replace(self._cfg, **values))
        self.status.value = ""

    def save(self, path: str | Path | None = None) -> Path:
        target = Path(path or self.path.value.strip())
        save_config(self._cfg, target)
        self.status.value = f"Saved every knob to {html.escape(str(target))}."
        return target

    def load(self, path: str | Path | None = None) -> Config:
        source = Path(path or self.path.value.strip())
        cfg = load_config(source)
        self._show(cfg)
        self.status.value = f"Loaded {html.escape(str(source))}."
        return cfg

    def _report(self, action):
        """Button handlers: an error goes to the status line, not to a log nobody sees."""
        try:
            action()
        except (OSError, ValueError) as e:
            self.status.value = f"<span style='color:#c0392b'>{html.escape(str(e))}</span>"

    def _ipython_display_(self):
        from IPython.display import display

        display(self.box)


