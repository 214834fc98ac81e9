"""memwarden's pytest plugin: memory-limit and leak markers; inert unless a marker or flag asks."""
