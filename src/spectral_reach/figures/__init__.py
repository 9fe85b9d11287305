"""One module per figure: a small summary table in, PDF and PNG out."""
