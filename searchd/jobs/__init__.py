"""The user's side: reading job files, validating them into frozen specs, the jobs folder."""
