"""Thin adapters to the outside world; each implements a Protocol from `ports`."""
