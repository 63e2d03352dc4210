"""Storage adapters: the protocol and the built-in backends."""
