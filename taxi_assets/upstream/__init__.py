"""The published files upstream: their URL layouts, and downloading them verified."""
