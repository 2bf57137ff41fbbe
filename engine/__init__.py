"""The matching engine: the pure book (engine.book) and the shells around it."""
