"""Enrichment: facts about a banned address (who owns it) fetched only on demand."""
