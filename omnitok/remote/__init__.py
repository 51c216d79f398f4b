"""Online exact counts through the providers' count APIs (used only when the user allows it)."""
