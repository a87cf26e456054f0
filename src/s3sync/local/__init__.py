"""The local side: key → path mapping and the atomic mirror directory."""
