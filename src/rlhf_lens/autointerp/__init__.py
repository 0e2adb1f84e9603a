"""Automated interpretability: explain features with an LLM and score the explanations by simulation."""
