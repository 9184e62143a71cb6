"""Assets by layer: raw (files as published), lake (Parquet), warehouse (PostgreSQL)."""
