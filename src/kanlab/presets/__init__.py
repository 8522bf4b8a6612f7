"""Study presets shipped with kanlab (TOML files read with importlib.resources)."""
