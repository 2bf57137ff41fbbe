"""Lambda handlers: thin shells over the shared package `hotshard`."""
