"""From run tables to the small summaries that figures plot: window means, fits, interpolation."""
