"""Data: the preference splits, the teacher LLM that writes synthetic answers, and fast generation with it."""
