"""Stage 4, scoring: the metric interface (`metric`), what metrics read and the cached scoring loop
(`context`), statistics over per-feature scores (`stats`) and each metric checked against a source
that knows the truth (`validation`)."""
