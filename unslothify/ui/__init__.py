"""What the notebooks show: the knob panel (panel), the chat box (chatbox), terminal and streaming chat (chat),
plots, and the helpers that keep cells short (notebook)."""
