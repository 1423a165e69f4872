"""Live collection: listeners that feed the same engine as replay."""
