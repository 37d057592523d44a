"""Run settings and the protocols that govern them (`protocol`)."""
