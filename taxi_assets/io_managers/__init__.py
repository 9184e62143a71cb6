"""IO managers: they move bytes and rows, and know nothing about taxis."""
