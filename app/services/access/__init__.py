"""Who gets in and what they may do: sign-in sessions, two-factor, roles, teams, password resets."""
