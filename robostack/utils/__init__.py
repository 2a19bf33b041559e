"""Small shared helpers: provenance, tables, plots."""
