"""ipywidgets for the notebooks: the knob panel (sliders bound to the one config) and the chat box.

The panel is built from the config's own field metadata (range, log scale, help line), so a knob added
to the dataclass appears here, in the CLI and in YAML without further code.
"""

from __future__ import annotations

import math
from pathlib import Path

from .config import Config, config_dict, knob_fields, load_config, replace, save_config

PANEL_KNOBS = ("learning_rate", "weight_decay", "warmup", "per_device_train_batch_size",
               "gradient_accumulation_steps", "lr_scheduler_type", "num_train_epochs", "lora_r", "lora_alpha",
               "lora_dropout", "max_seq_length", "evals_per_epoch", "early_stopping_patience")
# Slider ends where the config's hard range is wider than anyone would slide through.
SLIDER_LIMITS = {"warmup": (0.0, 0.5), "per_device_train_batch_size": (1, 64), "gradient_accumulation_steps": (1, 32),
                 "num_train_epochs": (0.5, 30.0), "lora_r": (1, 128), "lora_alpha": (1, 256),
                 "max_seq_length": (64, 4096), "evals_per_epoch": (1, 10), "early_stopping_patience": (0, 10),
                 "weight_decay": (0.0, 0.2)}
LORA_KNOBS = {"lora_r", "lora_alpha", "lora_dropout"}


def _field(name):
    return next(f for f in knob_fields() if f.name == name)


def _widget_for(name, value):
    import ipywidgets as w

    f = _field(name)
    m = f.metadata
    label = name.replace("per_device_train_", "").replace("_", " ")
    style = {"description_width": "170px"}
    layout = w.Layout(width="460px")
    if m.get("choices"):
        widget = w.Dropdown(options=list(m["choices"]), value=value, description=label, style=style, layout=layout)
    elif m.get("log"):
        widget = w.FloatLogSlider(value=value, base=10, min=math.log10(m["lo"]), max=math.log10(m["hi"]), step=0.05,
                                  description=label, readout_format=".1e", style=style, layout=layout)
    else:
        lo, hi = SLIDER_LIMITS.get(name, (m["lo"], m["hi"]))
        t = f.type if isinstance(f.type, str) else f.type.__name__
        if t == "int":
            widget = w.IntSlider(value=value, min=lo, max=max(hi, value), step=m.get("step") or 1,
                                 description=label, style=style, layout=layout)
        else:
            widget = w.FloatSlider(value=value, min=lo, max=max(hi, value), step=m.get("step") or 0.01,
                                   description=label, style=style, layout=layout, readout_format=".3g")
    help_text = m["help"] + (f" Overfitting: {m['overfit']}." if m.get("overfit") else "")
    widget.tooltip = help_text
    widget.add_class(f"knob-{name}")
    return widget, help_text


class ConfigPanel:
    """Sliders for the training knobs, bound to one Config: `panel.config` is always the validated
    current value. Save/Load write and read YAML."""

    def __init__(self, cfg: Config, yaml_path: str | Path = "config.yaml"):
        import ipywidgets as w

        self._cfg = cfg
        self.widgets = {}
        rows = []
        for name in PANEL_KNOBS:
            widget, help_text = _widget_for(name, getattr(cfg, name))
            widget.observe(self._changed(name), names="value")
            self.widgets[name] = widget
            hint = " (applies to a new adapter)" if name in LORA_KNOBS else ""
            rows.append(w.HBox([widget, w.HTML(f"<span style='color:#666;font-size:90%'>{help_text}{hint}</span>",
                                               layout=w.Layout(width="560px"))]))
        self.effective = w.HTML()
        self.status = w.HTML()
        self.path = w.Text(value=str(yaml_path), description="YAML file", layout=w.Layout(width="460px"))
        save = w.Button(description="Save", icon="save", tooltip="Write every knob to the YAML file")
        load = w.Button(description="Load", icon="folder-open", tooltip="Read knobs from the YAML file")
        save.on_click(lambda _: self.save())
        load.on_click(lambda _: self.load())
        self._update_effective()
        self.box = w.VBox([w.HTML("<b>Training knobs</b>"), *rows, self.effective,
                           w.HBox([self.path, save, load]), self.status])
        self.box.add_class("unslothify-config-panel")

    @property
    def config(self) -> Config:
        return self._cfg

    def _changed(self, name):
        def on_change(change):
            value = change["new"]
            if isinstance(value, float) and name not in ("learning_rate",):
                value = round(value, 6)
            try:
                self._cfg = replace(self._cfg, **{name: value})
                self.status.value = ""
            except ValueError as e:
                self.status.value = f"<span style='color:#c0392b'>{e}</span>"
            self._update_effective()
        return on_change

    def _update_effective(self):
        c = self._cfg
        self.effective.value = (f"Effective batch: {c.per_device_train_batch_size} x {c.gradient_accumulation_steps} "
                                f"= <b>{c.per_device_train_batch_size * c.gradient_accumulation_steps}</b> items per "
                                f"optimizer step (larger: fewer, smoother updates per epoch).")

    def set(self, **values):
        """Move sliders from code (same path as a user's drag)."""
        for name, value in values.items():
            self.widgets[name].value = value

    def save(self, path: str | Path | None = None) -> Path:
        target = Path(path or self.path.value)
        save_config(self._cfg, target)
        self.status.value = f"Saved every knob to {target}."
        return target

    def load(self, path: str | Path | None = None) -> Config:
        source = Path(path or self.path.value)
        try:
            cfg = load_config(source)
        except ValueError as e:
            self.status.value = f"<span style='color:#c0392b'>{e}</span>"
            raise
        values = config_dict(cfg)
        self._cfg = cfg
        for name, widget in self.widgets.items():
            widget.value = values[name]
        self._cfg = cfg
        self.status.value = f"Loaded {source}."
        return cfg

    def _ipython_display_(self):
        from IPython.display import display

        display(self.box)


class ChatBox:
    """A chat box: input, send, clear, multi-turn history, temperature / top_p / max_new_tokens."""

    def __init__(self, session):
        import ipywidgets as w

        self.session = session
        self.log = w.HTML(layout=w.Layout(width="760px", min_height="120px", border="1px solid #ddd", padding="6px"))
        self.input = w.Text(placeholder="Ask about Swedish meatballs ...", layout=w.Layout(width="560px"))
        self.send_button = w.Button(description="Send", button_style="primary", icon="paper-plane")
        self.clear_button = w.Button(description="Clear", icon="trash")
        self.temperature = w.FloatSlider(value=session.temperature, min=0.0, max=1.5, step=0.05,
                                         description="temperature")
        self.top_p = w.FloatSlider(value=session.top_p, min=0.1, max=1.0, step=0.05, description="top_p")
        self.max_new_tokens = w.IntSlider(value=session.max_new_tokens, min=16, max=1024, step=16,
                                          description="max tokens")
        self.send_button.on_click(lambda _: self.send())
        self.input.on_submit(lambda _: self.send())
        self.clear_button.on_click(lambda _: self.clear())
        self.box = w.VBox([self.log, w.HBox([self.input, self.send_button, self.clear_button]),
                           w.HBox([self.temperature, self.top_p, self.max_new_tokens])])
        self._render()

    def send(self, message: str | None = None) -> str:
        message = (message if message is not None else self.input.value).strip()
        if not message:
            return ""
        self.input.value = ""
        self.session.temperature = self.temperature.value
        self.session.top_p = self.top_p.value
        self.session.max_new_tokens = self.max_new_tokens.value
        partial = []
        for piece in self.session.stream(message):
            partial.append(piece)
            self._render(pending=(message, "".join(partial)))
        self._render()
        return self.session.history[-1]["content"]

    def clear(self):
        self.session.clear()
        self._render()

    def _render(self, pending=None):
        import html

        turns = list(self.session.history)
        if pending:
            turns += [{"role": "user", "content": pending[0]}, {"role": "assistant", "content": pending[1] + " ▌"}]
        parts = []
        for t in turns:
            who, color = ("You", "#3a7ca5") if t["role"] == "user" else ("Model", "#27ae60")
            parts.append(f"<div><b style='color:{color}'>{who}:</b> {html.escape(t['content'])}</div>")
        self.log.value = "".join(parts) or "<i style='color:#999'>No messages yet.</i>"

    def _ipython_display_(self):
        from IPython.display import display

        display(self.box)
