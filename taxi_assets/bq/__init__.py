"""BigQuery helpers for the warehouse: client, names, types, tables, the atomic month replace."""
