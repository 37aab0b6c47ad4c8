"""What every Encore package may import: the exception root (``common.errors``); it imports nothing of Encore."""
