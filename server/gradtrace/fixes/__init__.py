"""Quick-fixes: libcst edits that keep the user's formatting, and applying edits to text."""
