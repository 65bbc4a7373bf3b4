"""Business rules. Nothing here imports Flask's request; views call these."""
