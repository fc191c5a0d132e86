"""The third-party platform itself: ticket, component token, push intake, health, messages."""
