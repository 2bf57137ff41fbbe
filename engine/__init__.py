"""The matching engine: the pure book (engine.book) and the shells around it."""

from engine.native import choose_build

choose_build()
