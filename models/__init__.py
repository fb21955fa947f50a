"""The model catalog as data (catalog.toml); read it through edge_embed.catalog."""
