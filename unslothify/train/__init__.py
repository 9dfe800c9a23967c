"""Training: one call top to bottom (call), the session around it that keeps versions and interrupted calls
(session), what it trains on (inputs), its SFTConfig (args), the trainer (trainer) with its callbacks, warnings
(signals) and retention term (retention), what a run will take and what fits its time cap (plan), and the
version's manifest."""
