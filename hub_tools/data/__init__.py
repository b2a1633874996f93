"""The datasets: CHILDES minimal pairs read and checked, the DPO preference splits built, the synthetic split written
by a teacher LLM."""
