"""Test doubles, one per outside service; each records the calls it received."""
