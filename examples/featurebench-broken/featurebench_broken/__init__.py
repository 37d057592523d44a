"""Every entry point of this package names a number: each kind must refuse it with one line."""
NOT_A_PLUGIN = 3
