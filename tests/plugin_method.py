"""A method as an installed plug-in would ship it (the entry-point test points here)."""


def shout(ctx, features):
    return [f"FEATURE {f}" for f in features]
