"""The receiving end: what an agency runs to take the reads the gate shares with it."""
