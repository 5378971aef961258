"""Feed readers: one module per MIS export format, all yielding Person values and row errors."""
